"""Retrieval evaluation on BEIR-format sets (corpus.jsonl, queries.jsonl, qrels/test.tsv)."""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings

from erp_chatbot.settings import RetrievalSettings

if TYPE_CHECKING:
    from erp_chatbot.knowledge.index import KnowledgeIndex


@dataclass(frozen=True)
class BeirSet:
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test") -> BeirSet:
    """Read a BEIR folder; only queries that have judgements are kept."""
    missing = [p for p in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (folder / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a BEIR folder: missing {', '.join(missing)}")
    corpus = {}
    for row in _jsonl(folder / "corpus.jsonl"):
        corpus[row["_id"]] = f"{row.get('title', '')}\n{row['text']}".strip()
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {row["_id"]: row["text"] for row in _jsonl(folder / "queries.jsonl") if row["_id"] in qrels}
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels)


MODES = ("dense", "sparse", "hybrid")
METRICS = ("ndcg@10", "recall@5", "mrr@10")


@dataclass(frozen=True)
class ModeReport:
    mode: str
    scores: dict[str, float]  # METRICS, computed by ranx
    p50_ms: float  # latency of one retrieval (embedding the query included)
    p95_ms: float

    def as_dict(self) -> dict:
        return {"mode": self.mode, **self.scores, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms}


def index_corpus(embeddings: Embeddings, dataset: BeirSet, batch_size: int = 32) -> KnowledgeIndex:
    """An in-memory index of the corpus, one chunk per document (ids kept), FAISS and BM25."""
    from erp_chatbot.knowledge import index as index_store
    from erp_chatbot.knowledge.index import KnowledgeIndex, Manifest
    from erp_chatbot.knowledge.ingest import embed_in_batches

    ids = list(dataset.corpus)
    texts = [dataset.corpus[i] for i in ids]
    vectors = embed_in_batches(embeddings, texts, batch_size, progress=False)
    store = index_store.new_store(embeddings, len(vectors[0]))
    store.add_embeddings(list(zip(texts, vectors, strict=True)), [{"source": i} for i in ids], ids=ids)
    manifest = Manifest("evaluation", len(vectors[0]), index_store.STRATEGY, 0, 0)
    return KnowledgeIndex(store, manifest, Path("evaluation"), index_store.build_lexical(store))


def evaluate_retrieval(
    index: KnowledgeIndex,
    embeddings: Embeddings,
    dataset: BeirSet,
    settings: RetrievalSettings,
    modes: Sequence[str] = MODES,
) -> list[ModeReport]:
    """nDCG@10, recall@5 and MRR@10 (ranx) and latency of ``ERPRetriever`` in each mode.

    The threshold is off (every query gets 10 results); fusion settings come from ``settings``.
    """
    from ranx import Qrels, Run, evaluate

    from erp_chatbot.retrievers.erp import ERPRetriever

    reports = []
    for mode in modes:
        retriever = ERPRetriever(
            index=index,
            embeddings=embeddings,
            k=10,
            score_threshold=-1.0,
            mode=mode,
            query_cache_size=0,
            **settings.model_dump(include={"fusion", "dense_weight", "sparse_weight", "candidates", "rrf_k"}),
        )
        run, latencies = {}, []
        for query_id, text in dataset.queries.items():
            start = time.perf_counter()
            found = retriever.invoke(text)
            latencies.append(1000 * (time.perf_counter() - start))
            run[query_id] = {doc.id: 1.0 / rank for rank, doc in enumerate(found, start=1)} or {"": 0.0}
        scores = evaluate(Qrels(dataset.qrels), Run(run), list(METRICS), make_comparable=True)
        reports.append(
            ModeReport(
                mode,
                {name: round(float(value), 4) for name, value in scores.items()},
                round(statistics.median(latencies), 2),
                round(float(np.percentile(latencies, 95)), 2),
            )
        )
    return reports


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def record_score(path: Path, name: str, value: float) -> None:
    """Keep the latest score of an evaluation run where the server's /metrics picks it up."""
    scores = read_scores(path)
    scores[name] = {"value": value, "recorded_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(scores, indent=2))
    os.replace(tmp, path)


def read_scores(path: Path) -> dict[str, dict[str, float]]:
    return json.loads(path.read_text()) if path.is_file() else {}
