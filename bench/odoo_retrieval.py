"""Retrieval on our bilingual Odoo set, per mode, against the dense search alone (run by hand).

Ingests ../shared/data/odoo-docs-14.0/en with `erp-chatbot ingest`'s code (e5, chunks of 800), then
for each question of bench/datasets/odoo-bilingual.jsonl (30 English, 30 Korean; 52 answerable with
gold pages, 8 unanswerable) retrieves k=5 chunks in each mode and reports:
- the share of answerable questions whose gold page (any of them) is among the top 5, by language;
- the top cosine of answerable and unanswerable questions (what a cosine threshold could separate);
- p50 latency per mode, and of the baseline: embedding the query + raw faiss search, same run.
With --translate, the demo LLM also translates each Korean question into English (the chain's
prompt, greedy) and the modes are repeated with the translation as a query variant; the
translation's own latency is reported apart, and hybrid + translation is run once more with at most
one chunk per page (retrieval.chunks_per_source = 1), and once with translations made without the
glossary (retrieval.translation_glossary = none).

Writes bench/results/odoo-retrieval.json.   python bench/odoo_retrieval.py [--index DIR] [--translate] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import dense_search, write

from erp_chatbot.devices import detect_gpus, plan_devices
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.ingest import ingest
from erp_chatbot.models.embeddings import load_embeddings
from erp_chatbot.models.llm import llm_path
from erp_chatbot.retrievers.erp import ERPRetriever
from erp_chatbot.settings import Settings

ROOT = Path(__file__).resolve().parent
ODOO = ROOT.parent.parent / "shared" / "data" / "odoo-docs-14.0" / "en"
DATASET = ROOT / "datasets" / "odoo-bilingual.jsonl"


def page(source: str) -> str:
    return Path(source).stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, help="index folder to build or reuse (default: a temporary one)")
    parser.add_argument("--translate", action="store_true", help="also run with LLM translations as variants")
    parser.add_argument("--config", type=Path, help="settings YAML (e.g. the LLM that translates)")
    args = parser.parse_args()
    settings = Settings.from_yaml(args.config) if args.config else Settings()
    embeddings = load_embeddings(settings, plan_devices(settings, detect_gpus()).embeddings_device)
    questions = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index or Path(tmp) / "odoo-index"
        start = time.perf_counter()
        report = ingest(
            ODOO,
            index_dir,
            embeddings,
            embedding_model="multilingual-e5-small",
            chunk_size=settings.knowledge.chunk_size,
            chunk_overlap=settings.knowledge.chunk_overlap,
        )
        ingest_seconds = time.perf_counter() - start
        index = index_store.load(index_dir, embeddings)
        result = {
            "index": {"pages": index.manifest.document_count, "chunks": report.chunks_total},
            "ingest_seconds": round(ingest_seconds, 1),
            "baseline": baseline(index, embeddings, questions),
            "modes": {mode: evaluate(index, embeddings, questions, settings, mode) for mode in MODES},
        }
        if args.translate:
            llm, glossary = translating_llm(settings), settings.retrieval.translation_glossary
            variants, result["translation"] = translate(questions, settings, glossary, llm)
            result["translation"]["model"] = f"{settings.llm.backend}:{llm_path(settings).name}"
            if glossary != "none":  # what the glossary buys, in the same run
                plain, result["translation, no glossary"] = translate(questions, settings, "none", llm)
                result["modes"]["hybrid+translation, no glossary"] = evaluate(
                    index, embeddings, questions, settings, "hybrid", plain
                )
            for mode in MODES:
                result["modes"][f"{mode}+translation"] = evaluate(
                    index, embeddings, questions, settings, mode, variants
                )
            one_per_page = settings.model_copy(
                update={"retrieval": settings.retrieval.model_copy(update={"chunks_per_source": 1})}
            )
            result["modes"]["hybrid+translation, one chunk per page"] = evaluate(
                index, embeddings, questions, one_per_page, "hybrid", variants
            )
    base = result["baseline"]["p50_ms"]
    for mode in result["modes"].values():
        mode["p50_vs_dense_search"] = round(mode["p50_ms"] / base, 2)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {write('odoo-retrieval', result)}")


MODES = ("dense", "sparse", "hybrid")


def baseline(index, embeddings, questions) -> dict:
    """Embedding the query + raw faiss search for 5, as fast as retrieval can be."""
    samples = []
    for q in questions:
        start = time.perf_counter()
        dense_search(embeddings, index.store.index, q["question"], 5)
        samples.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": round(statistics.median(samples), 2)}


def translate(questions, settings: Settings, glossary_setting: str, llm) -> tuple[dict[str, list[str]], dict]:
    """Each Korean question's usable translation by the demo LLM, as the chain makes it, with the
    glossary ``glossary_setting`` (retrieval.translation_glossary)."""
    from erp_chatbot.chains.language import detect_language
    from erp_chatbot.chains.translation import build_translator, load_glossary
    from erp_chatbot.models.llm import greedy_capped

    glossary = load_glossary(glossary_setting)
    translator = build_translator(greedy_capped(llm, settings.llm.rewrite_max_new_tokens), glossary)
    variants, samples, hints = {}, [], {}
    for q in questions:
        if detect_language(q["question"]) != "ko":  # timed and reported: the questions the chain translates
            continue
        start = time.perf_counter()
        variants[q["id"]] = translator.invoke(q["question"])
        samples.append(time.perf_counter() - start)
        if hint := glossary and glossary.hint(q["question"]).strip():
            hints[q["id"]] = hint
    usable = sum(bool(v) for v in variants.values()) / len(variants)
    return variants, {
        "p50_s": round(statistics.median(samples), 2),
        "usable": round(usable, 3),
        "glossary": glossary_setting,
        "all": variants,
        "glossary_hints": hints,
    }


def translating_llm(settings: Settings):
    from erp_chatbot.devices import plan_devices
    from erp_chatbot.models.llm import build_llm

    return build_llm(llm_path(settings), settings.llm, plan_devices(settings, detect_gpus()).llm, batching=None)


def evaluate(index, embeddings, questions, settings: Settings, mode: str, variants: dict | None = None) -> dict:
    retriever = ERPRetriever.from_settings(index, embeddings, settings)
    retriever = retriever.model_copy(update={"mode": mode, "score_threshold": -1.0, "query_cache_size": 0})
    hits = {"en": [], "ko": []}
    top_cosine = {"answerable": [], "unanswerable": []}
    latencies = []
    misses = []
    for q in questions:
        start = time.perf_counter()
        found = retriever.invoke(q["question"], variants=(variants or {}).get(q["id"], []))
        latencies.append(1000 * (time.perf_counter() - start))  # retrieval only: translation is timed apart
        cosine = max((d.metadata["score"] for d in found), default=-1.0)
        kind = "answerable" if q["answerable"] else "unanswerable"
        top_cosine[kind].append(cosine)
        if q["answerable"]:
            hit = bool({page(d.metadata["source"]) for d in found} & set(q["gold"]))
            hits[q["language"]].append(hit)
            if not hit:
                misses.append(q["id"])
    return {
        "gold_in_top5": {lang: round(sum(v) / len(v), 3) for lang, v in hits.items()},
        "top_cosine_median": {kind: round(statistics.median(v), 3) for kind, v in top_cosine.items()},
        "top_cosine_range": {kind: [round(min(v), 3), round(max(v), 3)] for kind, v in top_cosine.items()},
        "p50_ms": round(statistics.median(latencies), 2),
        "missed": misses,
    }


if __name__ == "__main__":
    main()
