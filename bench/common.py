"""Helpers shared by the benchmark scripts: timing, serving an app on loopback, writing results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """The CPU as the kernel names it, its core count and whether it has AVX-512: llama.cpp's speed
    differs about 3x between the 2-core machines measured here (bench/README.md)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = ", AVX-512" if " avx512f" in info else ", no AVX-512"
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs{flags}, no GPU"


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(function: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def merge(name: str, group: str, key: str, value: Any, header: dict[str, Any]) -> Path:
    """Add ``value`` under ``group``/``key`` of results/NAME.json (made with ``header`` if new), so
    runs of one script accumulate."""
    path = RESULTS / f"{name}.json"
    merged = json.loads(path.read_text()) if path.is_file() else {**header, group: {}}
    merged[group][key] = value
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    return path


def write(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2, ensure_ascii=False) + "\n")
    return path


def dense_search(embeddings: Any, faiss_index: Any, query: str, k: int) -> None:
    """The baseline retrieval is measured against: embed the query, then a raw faiss search."""
    import numpy as np

    faiss_index.search(np.asarray([embeddings.embed_query(query)], dtype="float32"), k)
