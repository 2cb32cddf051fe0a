"""Retrieval and ingestion overhead against their raw baselines, in one run (run by hand).

- ingestion: chunks/s through `ingest` vs the raw encoder (SentenceTransformer.encode) on the same
  chunks, over the first --pages pages of ../shared/data/odoo-docs-14.0/en
- retrieval: ERPRetriever vs embedding the query + a raw faiss search, on that Odoo index and on
  a synthetic index of 100,000 chunks

Writes bench/results/retrieval.json.   python bench/retrieval.py [--pages 80]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import dense_search, p50, timed, write

from erp_chatbot import Settings
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.ingest import ingest
from erp_chatbot.knowledge.loaders import iter_files, load_file
from erp_chatbot.knowledge.splitting import split_documents
from erp_chatbot.models.embeddings import load_embeddings
from erp_chatbot.retrievers.erp import ERPRetriever

ODOO = Path(__file__).resolve().parents[2] / "shared" / "data" / "odoo-docs-14.0" / "en"
QUERIES = [
    "How do I approve a vendor bill?",
    "How do I record a payment?",
    "How do I set up a new warehouse?",
    "How do I create a quotation template?",
    "How do I configure payment terms?",
    "What is a kit product?",
    "How do I manage product variants?",
    "How do I track serial numbers?",
    "How do I close a fiscal year?",
    "How do I invite a new user?",
    "공급업체 청구서는 어떻게 승인하나요?",
    "재고 위치는 어떻게 설정하나요?",
]


def compare(retriever: ERPRetriever, repeat: int = 5) -> dict:
    embeddings, faiss_index = retriever.embeddings, retriever.index.store.index

    k = retriever.k
    ours = [t for q in QUERIES for t in timed(lambda q=q: retriever.invoke(q), repeat)]
    base = [t for q in QUERIES for t in timed(lambda q=q: dense_search(embeddings, faiss_index, q, k), repeat)]
    return {"erp_retriever_p50_ms": p50(ours) * 1000, "raw_p50_ms": p50(base) * 1000, "ratio": p50(ours) / p50(base)}


def synthetic(embeddings, size: int = 100_000) -> index_store.KnowledgeIndex:
    store = index_store.new_store(embeddings, 384)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, 384)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"synthetic chunk {i}" for i in range(size)]
    metadata = [{"source": f"doc-{i // 10}.md", "title": f"Doc {i // 10}", "chunk_id": str(i)} for i in range(size)]
    store.add_embeddings(
        list(zip(texts, vectors.tolist(), strict=True)), metadatas=metadata, ids=[str(i) for i in range(size)]
    )
    manifest = index_store.Manifest("synthetic", 384, index_store.STRATEGY, 800, 100)
    return index_store.KnowledgeIndex(store, manifest, Path("synthetic"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=80)
    args = parser.parse_args()
    settings = Settings()
    embeddings = load_embeddings(settings, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for page in sorted(ODOO.glob("*.txt"))[: args.pages]:
            shutil.copy(page, docs / page.name)  # a temporary working copy, deleted after the run
        chunks = split_documents([d for f in iter_files(docs) for d in load_file(f, docs)], 800, 100)
        texts = [c.page_content for c in chunks]
        start = time.perf_counter()
        embeddings._client.encode([settings.embeddings.passage_prefix + t for t in texts], batch_size=32)
        raw_rate = len(texts) / (time.perf_counter() - start)
        start = time.perf_counter()
        report = ingest(
            docs,
            Path(tmp) / "index",
            embeddings,
            embedding_model="multilingual-e5-small",
            chunk_size=800,
            chunk_overlap=100,
            progress=False,
        )
        ingest_rate = report.chunks_total / (time.perf_counter() - start)
        odoo = index_store.load(Path(tmp) / "index", embeddings)
        result = {
            "ingestion": {
                "pages": args.pages,
                "chunks": len(texts),
                "ingest_chunks_per_s": ingest_rate,
                "raw_encoder_chunks_per_s": raw_rate,
                "ratio": ingest_rate / raw_rate,
            },
            # query_cache_size=0: both arms embed every query (the LRU would skip the encoder)
            "retrieval_odoo": compare(ERPRetriever(index=odoo, embeddings=embeddings, query_cache_size=0)),
            "retrieval_100k": compare(
                ERPRetriever(index=synthetic(embeddings), embeddings=embeddings, score_threshold=-1, query_cache_size=0)
            ),
        }
    print(write("retrieval", result))
    for section, figures in result.items():
        print(section, {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    main()
