"""Cold start and time per answer of the demo app on this machine (run by hand).

Starts `erp-chatbot serve --demo` as a user would, waits for /health, then asks the bundled
sample knowledge a few Korean and English questions over HTTP (invoke and stream) with the demo
profile's settings. Writes bench/results/serve_demo.json.

    python bench/serve_demo.py [--port 8765]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import machine

QUESTIONS = [
    "재고 이동은 어디서 확인하나요?",
    "How do I approve a vendor bill?",
    "연차는 며칠 전에 신청해야 하나요?",
    "When must the electronic tax invoice be issued?",
]
RESULTS = Path(__file__).parent / "results" / "serve_demo.json"


def wait_healthy(url: str, process: subprocess.Popen, limit: float = 600) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if process.poll() is not None:
            sys.exit(f"the app exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit("the app did not become healthy")


def ask(url: str, question: str, session: str) -> dict:
    payload = {"input": {"question": question}, "config": {"configurable": {"session_id": session}}}
    start = time.perf_counter()
    first_token = None
    answer = ""
    with httpx.stream("POST", f"{url}/erp/stream", json=payload, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("answer"):
                first_token = first_token or time.perf_counter() - start
                answer += chunk["answer"]
    return {
        "question": question,
        "seconds": round(time.perf_counter() - start, 2),
        "first_token_seconds": round(first_token or 0, 2),
        "answer_chars": len(answer),
        "answer": answer,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    command = [shutil.which("erp-chatbot") or "erp-chatbot", "serve", "--demo", "--port", str(args.port)]
    env = {**os.environ, "ERP_CACHE__ENABLED": "false"}  # time the model, not the response cache
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        cold_start = wait_healthy(url, process)
        answers = [ask(url, q, f"bench-{i}-{int(time.time())}") for i, q in enumerate(QUESTIONS)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    models = Path(os.environ.get("ERP_HOME", "~/.cache/erp-chatbot")).expanduser() / "models"
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in models.iterdir() if p.is_dir()}
    seconds = sorted(a["seconds"] for a in answers)
    result = {
        "machine": machine(),
        "cold_start_seconds": round(cold_start, 1),
        "median_answer_seconds": seconds[len(seconds) // 2],
        "answers": answers,
        "model_bytes_on_disk": sizes,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"cold start {result['cold_start_seconds']} s; median answer {result['median_answer_seconds']} s")
    for a in answers:
        print(f"  {a['seconds']:6.1f} s (first token {a['first_token_seconds']} s)  {a['question']}")
    for name, size in sizes.items():
        print(f"  {name}: {size / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
