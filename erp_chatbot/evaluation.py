"""Retrieval evaluation on BEIR-format sets (corpus.jsonl, queries.jsonl, qrels/test.tsv)."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.embeddings import Embeddings


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


def dense_ndcg_at_k(embeddings: Embeddings, dataset: BeirSet, k: int = 10, batch_size: int = 32) -> float:
    """nDCG@k of exhaustive cosine search (scikit-learn's standard nDCG definition)."""
    import numpy as np
    from sklearn.metrics import ndcg_score

    doc_ids = list(dataset.corpus)
    texts = [dataset.corpus[i] for i in doc_ids]
    docs = np.array(
        [v for s in range(0, len(texts), batch_size) for v in embeddings.embed_documents(texts[s : s + batch_size])]
    )
    query_ids = list(dataset.queries)
    queries = np.array([embeddings.embed_query(dataset.queries[q]) for q in query_ids])
    scores = queries @ docs.T
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    relevance = np.zeros_like(scores)
    for row, query_id in enumerate(query_ids):
        for doc_id, grade in dataset.qrels[query_id].items():
            relevance[row, position[doc_id]] = grade
    return float(ndcg_score(relevance, scores, k=k))


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
