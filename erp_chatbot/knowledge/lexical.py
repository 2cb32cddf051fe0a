"""The sparse side of retrieval: BM25 (``bm25s``) over language-aware terms.

Korean terms come from Kiwi's morphological analysis (``kiwipiepy``): particles and endings are
dropped, so ``재고를`` and ``재고는`` both index ``재고``. Latin-script words, numbers and codes,
in English pages or inside Korean questions, are lower-cased and lightly stemmed, so English ERP
terms meet on the same terms; a code such as ``SO-2024-001`` counts whole and by its parts.

The index lives next to the FAISS files of a generation (``bm25/``), listed in the manifest's
checksums. It is rebuilt on every ingest (BM25 statistics are corpus-wide), reusing the terms of
chunks that did not change (chunk ids are content hashes), so only new text is analysed.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

FOLDER = "bm25"
_TERMS = "terms.json"  # {"analyzer": ANALYZER, "rows": [[chunk_id, [term, ...]], ...]} in FAISS row order
ANALYZER = 2  # bump when ``terms`` changes: stored terms of another version are not reused
# Korean content morphemes: nouns, numerals, pronouns, verb/adjective roots, roots, hanja. Latin
# words and digits are taken by a regular expression instead: Kiwi splits "goods." into "go" + "ods.".
_KOREAN_KEEP = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SH")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LATIN = re.compile(r"[A-Za-z0-9]+(?:[-_/.:][A-Za-z0-9]+)*")
_ENGLISH_STOPWORDS = frozenset(
    """a an the and or of to in on at by for with from is are was were be been do does did how what when
    where which who why can i you we it this that my our your me there here as into then""".split()  # noqa: SIM905 - a word list reads better as text
)
_lock = threading.Lock()


@functools.cache
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def terms(text: str) -> list[str]:
    """The BM25 terms of ``text``: Korean morphemes, then Latin words and codes."""
    return [*_korean_terms(text), *_latin_terms(text)]


def _korean_terms(text: str) -> list[str]:
    if not _HANGUL.search(text):
        return []
    with _lock:  # Kiwi instances are not documented as thread-safe
        tokens = _kiwi().tokenize(text)
    return [t.form for t in tokens if t.tag.split("-")[0] in _KOREAN_KEEP]


def _latin_terms(text: str) -> list[str]:
    """Words lower-cased and stemmed, stopwords dropped; a code (SO-2024-001) counts whole and by parts."""
    out = []
    for match in _LATIN.finditer(text):
        token = match.group().lower()
        parts = re.split(r"[-_/.:]", token)
        for term in [token, *parts] if len(parts) > 1 else [token]:
            if term and term not in _ENGLISH_STOPWORDS and (len(term) > 1 or term.isdigit()):
                out.append(_stem(term) if term.isalpha() else term)
    return out


def _stem(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed and a final -e (approve, approved, approving -> approv)."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


class LexicalIndex:
    """BM25 over the chunks of one index generation; row i is chunk ``chunk_ids[i]``."""

    def __init__(self, model, chunk_ids: list[str], chunk_terms: list[list[str]], analyzer: int | None = None) -> None:
        self.model = model
        self.chunk_ids = chunk_ids
        self.chunk_terms = chunk_terms
        self.analyzer = ANALYZER if analyzer is None else analyzer  # None: built now, by this analyzer

    @classmethod
    def build(
        cls, chunk_ids: Sequence[str], texts: Sequence[str], previous: LexicalIndex | None = None
    ) -> LexicalIndex:
        """Index ``texts``; terms of chunks already in ``previous`` are reused, not re-analysed."""
        bm25s = _bm25s()

        reusable = previous is not None and previous.analyzer == ANALYZER
        known = dict(zip(previous.chunk_ids, previous.chunk_terms, strict=True)) if reusable else {}
        chunk_terms = [known[c] if c in known else terms(text) for c, text in zip(chunk_ids, texts, strict=True)]
        model = bm25s.BM25()
        if chunk_terms:
            model.index([t or [""] for t in chunk_terms], show_progress=False)
        return cls(model, list(chunk_ids), chunk_terms)

    def save(self, folder: Path) -> None:
        target = folder / FOLDER
        target.mkdir(parents=True, exist_ok=True)
        if self.chunk_ids:
            self.model.save(str(target), show_progress=False)
        rows = [[c, t] for c, t in zip(self.chunk_ids, self.chunk_terms, strict=True)]
        data = {"analyzer": self.analyzer, "rows": rows}
        (target / _TERMS).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        bm25s = _bm25s()

        target = folder / FOLDER
        data = json.loads((target / _TERMS).read_text(encoding="utf-8"))
        if isinstance(data, list):  # analyzer 1 stored the rows alone
            data = {"analyzer": 1, "rows": data}
        rows = data["rows"]
        model = bm25s.BM25.load(str(target), show_progress=False, allow_pickle=False) if rows else bm25s.BM25()
        return cls(model, [c for c, _ in rows], [t for _, t in rows], data["analyzer"])

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The k best chunks by BM25 with their scores; ``allowed`` masks rows before ranking."""
        import numpy as np

        every = self._scores(query)
        if every is None:
            return []
        if allowed is not None:
            readable = np.zeros(every.size, dtype=bool)
            readable[allowed] = True
            every = np.where(readable, every, 0.0)
        k = min(k, every.size)
        top = np.argpartition(-every, k - 1)[:k]
        top = top[np.argsort(-every[top], kind="stable")]
        return [(self.chunk_ids[int(row)], float(every[row])) for row in top if every[row] > 0]

    def scores(self, query: str, rows: Sequence[int]) -> tuple[list[float], tuple[float, float]]:
        """BM25 scores of ``query`` for the chunks at ``rows``, and their mean and deviation over all chunks."""
        every = self._scores(query)
        if every is None:
            return [0.0] * len(rows), (0.0, 0.0)
        return [float(every[row]) for row in rows], (float(every.mean()), float(every.std()))

    @functools.lru_cache(maxsize=64)  # noqa: B019 - the index lives as long as its cache; one retrieval asks twice
    def _scores(self, query: str) -> np.ndarray | None:
        """BM25 scores of ``query`` for every chunk; None when it shares no term with the index."""
        query_terms = [t for t in terms(query) if t in self.model.vocab_dict] if self.chunk_ids else []
        return self.model.get_scores(query_terms) if query_terms else None


def _bm25s():
    """``bm25s``, its logger put back under the application's level: it sets itself to DEBUG when
    imported, which printed "DEBUG Building index from tokens" at every ingest and start."""
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s
