"""Evaluation: retrieval on BEIR-format sets (corpus.jsonl, queries.jsonl, qrels/test.tsv), and
whole answers on question sets (JSONL: question, gold pages, expected facts, answerable)."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import PrivateAttr

from erp_chatbot.chains.language import Language, detect_language
from erp_chatbot.settings import RetrievalSettings, Settings

if TYPE_CHECKING:
    from erp_chatbot.knowledge.index import KnowledgeIndex
    from erp_chatbot.schemas import Answer


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


def index_corpus(
    embeddings: Embeddings, dataset: BeirSet, batch_size: int = 32, vectors_dir: Path | None = None
) -> KnowledgeIndex:
    """An in-memory index of the corpus, one chunk per document (ids kept), FAISS and BM25. With
    ``vectors_dir``, the corpus's vectors are kept there and reused (``knowledge.vector_cache``)."""
    from erp_chatbot.knowledge import index as index_store
    from erp_chatbot.knowledge.index import KnowledgeIndex, Manifest
    from erp_chatbot.knowledge.ingest import embed_in_batches
    from erp_chatbot.knowledge.search_index import build_lexical
    from erp_chatbot.knowledge.vector_cache import cached_vectors

    ids = list(dataset.corpus)
    texts = [dataset.corpus[i] for i in ids]
    embed = partial(embed_in_batches, embeddings, batch_size=batch_size, progress=False)
    vectors = cached_vectors(embeddings, texts, vectors_dir, embed)
    store = index_store.new_store(embeddings, len(vectors[0]))
    store.add_embeddings(list(zip(texts, vectors, strict=True)), [{"source": i} for i in ids], ids=ids)
    manifest = Manifest("evaluation", len(vectors[0]), index_store.STRATEGY, 0, 0)
    return KnowledgeIndex(store, manifest, Path("evaluation"), build_lexical(store))


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


@dataclass(frozen=True)
class AnswerCase:
    id: str
    question: str
    gold: list[str]  # page paths or file stems; any one counts
    facts: list[str]  # what the answer must state (matched by ``fact_found``)
    answerable: bool
    language: Language
    split: str = ""  # "dev" (tune on it) or "test" (report on it); "" when the set has no splits


def load_answer_cases(path: Path, split: str | None = None) -> list[AnswerCase]:
    """Read a JSONL question set; each line needs ``question``, and ``gold``/``facts`` when answerable.

    ``language`` ("en"/"ko") is detected from the question when a line does not give it. With
    ``split``, only the lines of that ``split`` are kept.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a JSONL file of questions")
    cases = []
    for number, row in enumerate(_jsonl(path), start=1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ValueError(f"{path} line {number}: 'question' must be a non-empty string")
        answerable = bool(row.get("answerable", True))
        if answerable and not row.get("gold"):
            raise ValueError(f"{path} line {number}: an answerable question needs its 'gold' pages")
        language = row.get("language") or detect_language(row["question"])
        if language not in ("en", "ko"):
            raise ValueError(f"{path} line {number}: 'language' must be 'en' or 'ko', not {language!r}")
        cases.append(
            AnswerCase(
                str(row.get("id", number)),
                row["question"],
                row.get("gold", []),
                row.get("facts", []),
                answerable,
                language,
                str(row.get("split", "")),
            )
        )
    if split is not None:
        cases = [case for case in cases if case.split == split]
        if not cases:
            raise ValueError(f"{path} has no question in split {split!r}")
    return cases


class OracleRetriever(BaseRetriever):
    """The ceiling retrieval cannot raise: for a question of the set, the ``k`` chunks of its gold
    pages closest to it (by the index's own embeddings); for anything else, the same as none."""

    index: Any
    embeddings: Any
    gold: dict[str, list[str]]  # question -> gold page stems
    k: int = 3

    _by_page: dict[str, list[Document]] | None = PrivateAttr(default=None)

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None, **_: Any) -> list[Document]:
        by_page = self._chunks_by_page()
        chunks = list({id(c): c for page in self.gold.get(query, []) for c in by_page.get(page, [])}.values())
        if not chunks:
            return []
        cosines = self.index.cosines(self.embeddings.embed_query(query), chunks)
        ranked = sorted(zip(cosines, chunks, strict=True), key=lambda pair: pair[0], reverse=True)[: self.k]
        return [Document(c.page_content, id=c.id, metadata={**c.metadata, "score": s}) for s, c in ranked]

    def _chunks_by_page(self) -> dict[str, list[Document]]:
        """Every chunk of the index under its source path and under its file stem, built once."""
        if self._by_page is None:
            store, by_page = self.index.store, {}
            for chunk_id in store.index_to_docstore_id.values():
                chunk = store.docstore.search(chunk_id)
                source = chunk.metadata.get("source", "")
                for name in {source, Path(source).stem}:
                    by_page.setdefault(name, []).append(chunk)
            self._by_page = by_page
        return self._by_page


def answering_settings(settings: Settings, temperature: float = 0.0) -> Settings:
    """``settings`` as answers are evaluated: at ``temperature`` (0: greedy, reproducible), and
    without the response cache, so that every question is answered by the chain."""
    return settings.model_copy(
        update={
            "llm": settings.llm.model_copy(update={"temperature": temperature}),
            "cache": settings.cache.model_copy(update={"enabled": False}),
        }
    )


def evaluate_answers(ask: Callable[[str], Answer], cases: Sequence[AnswerCase]) -> dict:
    """Ask each question in a new session and score the answer, overall, per language, and per split
    and language when the set has splits.

    Per answer: declined; the share of expected facts in the text shown (``fact_found``), and whether
    that is at least half of them; a gold page cited; UI names, menu steps or numbers shown that no
    retrieved section holds (``invented``: the grounding check of the text shown); the answer's prose
    language and the language of its first line (an extracted answer's lead); seconds to the complete
    answer and to its first content.
    """
    return summarise([_score(case, ask) for case in cases])


def summarise(rows: list[dict]) -> dict:
    """The scored answers' shares and times: overall, per language, per split and language."""
    report: dict[str, Any] = _summary(rows)
    report["by_language"] = _by_language(rows)
    splits = sorted({r["split"] for r in rows if r["split"]})
    if splits:
        report["by_split"] = {split: _by_language([r for r in rows if r["split"] == split]) for split in splits}
    return {**report, "cases": rows}


def _by_language(rows: list[dict]) -> dict[str, dict]:
    return {language: _summary([r for r in rows if r["language"] == language]) for language in ("en", "ko")}


def _score(case: AnswerCase, ask: Callable[[str], Answer]) -> dict:
    start = time.perf_counter()
    answer = ask(case.question)
    seconds = time.perf_counter() - start
    cited = {s.source for s in answer.sources} | {Path(s.source).stem for s in answer.sources}
    found = [fact for fact in case.facts if fact_found(fact, answer.text)]
    declined = not answer.covered
    return {
        "id": case.id,
        "split": case.split,
        "language": case.language,
        "answerable": case.answerable,
        "declined": declined,
        "facts": len(found) == len(case.facts) and not declined,  # a question with no facts: any answer
        "facts_half": 2 * len(found) >= len(case.facts) and not declined,
        "facts_found": found,
        "gold_cited": bool(cited & set(case.gold)),
        "in_language": answer_language(answer.text) == case.language,
        "lead_in_language": answer_language(answer.text.strip().split("\n", 1)[0]) == case.language,
        "grounded": answer.grounded,
        "invented": answer.unsupported,
        "vague": answer.vague,
        "support": answer.support,
        "seconds": round(seconds, 2),
        "first_token_seconds": answer.timings.get("first_token"),
        "answer": answer.text,
    }


_FACT_NOISE = re.compile(r"[*`\"“”‘’'‣›»>→:;,.!?()\[\]/|_-]+")


def fact_found(fact: str, text: str) -> bool:
    """Whether ``text`` states ``fact``, tolerating word form and order: every term of the fact
    (``knowledge.lexical.terms``: stemmed English words, Korean morphemes; case, markup and menu
    separators ignored) occurs somewhere in the text. "Journal Items" is found in "the journal
    item's tab"; "Lock Date" is not found in "lock the period"."""
    from erp_chatbot.knowledge.lexical import terms

    wanted = set(terms(_FACT_NOISE.sub(" ", fact)))
    if not wanted:
        return fact.strip().lower() in text.lower()
    return wanted <= set(terms(_FACT_NOISE.sub(" ", text)))


def answer_language(text: str) -> Language:
    """The language of an answer's prose: quoted names and menu paths may stay as the UI shows them."""
    prose = re.sub(r"\*\*.+?\*\*|\*[^*\n]+\*|`[^`]+`|\"[^\"]+\"|[^\s]*[‣>][^\s]*", " ", text)
    return detect_language(prose)


def _summary(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    answered = [r for r in rows if not r["declined"]]
    first_tokens = [r["first_token_seconds"] for r in rows if r["first_token_seconds"] is not None]
    return {
        "questions": len(rows),
        "facts_found": _share(answerable, lambda r: r["facts"]),
        "facts_half": _share(answerable, lambda r: r["facts_half"]),
        "gold_cited": _share(answerable, lambda r: r["gold_cited"]),
        "in_language": _share(answered, lambda r: r["in_language"]),
        "lead_in_language": _share(answered, lambda r: r["lead_in_language"]),
        "answerable_not_declined": _share(answerable, lambda r: not r["declined"]),
        "unanswerable_declined": _share(unanswerable, lambda r: r["declined"]),
        "grounded": _share(answered, lambda r: r["grounded"]),
        "nothing_invented": _share(answered, lambda r: not r["invented"]),
        "vague": _share(answered, lambda r: r["vague"]),
        "p50_seconds": round(statistics.median(r["seconds"] for r in rows), 2) if rows else None,
        "p50_first_token_seconds": round(statistics.median(first_tokens), 2) if first_tokens else None,
    }


def _share(rows: list[dict], test: Callable[[dict], bool]) -> float | None:
    return round(sum(1 for r in rows if test(r)) / len(rows), 3) if rows else None


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
