"""The sparse side of retrieval: BM25 (``bm25s``) over language-aware terms.

Terms come from Kiwi's morphological analysis (``kiwipiepy``), which handles Korean, Latin-script
words and codes in one pass: Korean particles and endings are dropped so ``재고를`` and ``재고는``
both index ``재고``; Latin words (tagged SL) are lower-cased and lightly stemmed, so English pages
and English ERP terms inside Korean questions meet on the same terms; numbers and serials (SN,
W_SERIAL) are kept whole.

The index lives next to the FAISS files of a generation (``bm25/``), listed in the manifest's
checksums. It is rebuilt on every ingest (BM25 statistics are corpus-wide), reusing the terms of
chunks that did not change (chunk ids are content hashes), so only new text is analysed.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

FOLDER = "bm25"
_TERMS = "terms.json"  # [[chunk_id, [term, ...]], ...] in FAISS row order
# content morphemes: nouns, verb/adjective roots, roots, foreign words, hanja, numbers and codes
_KEEP = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SL", "SH", "SN", "W_SERIAL", "W_HASHTAG")
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
    """The BM25 terms of ``text``, in order."""
    with _lock:  # Kiwi instances are not documented as thread-safe
        tokens = _kiwi().tokenize(text)
    out = []
    for token in tokens:
        tag = token.tag.split("-")[0]
        if tag not in _KEEP:
            continue
        form = token.form.lower()
        if tag == "SL":
            if form in _ENGLISH_STOPWORDS or len(form) < 2:
                continue
            form = _stem(form)
        out.append(form)
    return out


def _stem(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed and a final -e (approve, approved, approving -> approv)."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


class LexicalIndex:
    """BM25 over the chunks of one index generation; row i is chunk ``chunk_ids[i]``."""

    def __init__(self, model, chunk_ids: list[str], chunk_terms: list[list[str]]) -> None:
        self.model = model
        self.chunk_ids = chunk_ids
        self.chunk_terms = chunk_terms

    @classmethod
    def build(
        cls, chunk_ids: Sequence[str], texts: Sequence[str], previous: LexicalIndex | None = None
    ) -> LexicalIndex:
        """Index ``texts``; terms of chunks already in ``previous`` are reused, not re-analysed."""
        import bm25s

        known = dict(zip(previous.chunk_ids, previous.chunk_terms, strict=True)) if previous else {}
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
        (target / _TERMS).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        target = folder / FOLDER
        rows = json.loads((target / _TERMS).read_text(encoding="utf-8"))
        model = bm25s.BM25.load(str(target), show_progress=False, allow_pickle=False) if rows else bm25s.BM25()
        return cls(model, [c for c, _ in rows], [t for _, t in rows])

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The k best chunks by BM25 with their scores; ``allowed`` masks rows before ranking."""
        import numpy as np

        query_terms = [t for t in terms(query) if t in self.model.vocab_dict]
        if not query_terms or not self.chunk_ids:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.chunk_ids), dtype="float32")
            mask[allowed] = 1.0
        k = min(k, len(self.chunk_ids))
        rows, scores = self.model.retrieve([query_terms], k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [(self.chunk_ids[int(r)], float(s)) for r, s in zip(rows[0], scores[0], strict=True) if s > 0]

    def scores(self, query: str, rows: Sequence[int]) -> tuple[list[float], tuple[float, float]]:
        """BM25 scores of ``query`` for the chunks at ``rows``, and their mean and deviation over all chunks."""
        query_terms = [t for t in terms(query) if t in self.model.vocab_dict]
        if not query_terms or not self.chunk_ids:
            return [0.0] * len(rows), (0.0, 0.0)
        every = self.model.get_scores(query_terms)
        return [float(every[row]) for row in rows], (float(every.mean()), float(every.std()))
