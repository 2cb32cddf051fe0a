"""Translating Korean questions into the English of ERP manuals, for retrieval.

A small model translates ERP terms word by word (총괄 발주, a blanket order, came out as "the total
amount of the annual contract"), and the page that answers is then not found. A glossary of Korean
ERP terms gives it the manual's words for the terms a question holds.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from erp_chatbot.chains.language import Language, detect_language
from erp_chatbot.chains.prompts import TRANSLATE, TRANSLATION_TARGET

BUILTIN_GLOSSARY = Path(__file__).resolve().parent.parent / "glossaries" / "erp-terms.ko-en.tsv"
_WORD_START = r"(?<![0-9A-Za-z가-힣])"  # a term begins a word; particles may follow it


class GlossaryError(ValueError):
    """A glossary file that cannot be read as Korean term<TAB>English term lines."""


class Glossary:
    """Korean ERP terms and the English words manuals use for them (``terms``: Korean -> English)."""

    def __init__(self, terms: dict[str, str]) -> None:
        self.terms = dict(terms)
        # Longest first: at one position the alternation takes "품질 검사 구역" before "품질 검사".
        spelled = sorted(self.terms, key=len, reverse=True)
        alternatives = [r"\s*".join(map(re.escape, term.split())) for term in spelled]
        self._pattern = re.compile(_WORD_START + "(" + "|".join(alternatives) + ")") if spelled else None
        self._by_spelling = {_squeezed(term): term for term in spelled}

    @classmethod
    def load(cls, path: Path) -> Glossary:
        """Read a TSV file: ``#`` comments, blank lines, then one ``Korean<TAB>English`` pair per line."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise GlossaryError(
                f"cannot read the translation glossary {path}: {error.strerror}; "
                "set retrieval.translation_glossary to a readable file, builtin or none"
            ) from error
        terms: dict[str, str] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            korean, tab, english = line.partition("\t")
            if not tab or not korean.strip() or not english.strip() or "\t" in english:
                raise GlossaryError(f"{path}:{number}: expected 'Korean term<TAB>English term', got {line!r}")
            terms[" ".join(korean.split())] = english.strip()
        return cls(terms)

    @property
    def digest(self) -> str:
        """Changes whenever an entry does: part of the chain's fingerprint."""
        material = "\n".join(f"{k}\t{v}" for k, v in sorted(self.terms.items()))
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def matches(self, question: str) -> list[tuple[str, str]]:
        """The (Korean, English) pairs whose Korean term the question holds, in order, each once."""
        if self._pattern is None:
            return []
        found: dict[str, str] = {}
        for match in self._pattern.finditer(question):
            term = self._by_spelling[_squeezed(match.group(1))]
            found.setdefault(term, self.terms[term])
        return list(found.items())

    def hint(self, question: str) -> str:
        """The line the translation prompt ends with; empty, and the prompt unchanged, without a match."""
        pairs = self.matches(question)
        return "\nGlossary: " + "; ".join(f"{k} = {v}" for k, v in pairs) if pairs else ""


def _squeezed(term: str) -> str:
    return "".join(term.split())


def load_glossary(setting: str) -> Glossary | None:
    """``retrieval.translation_glossary``: builtin, none, or the path of a TSV file."""
    if setting == "none":
        return None
    return Glossary.load(BUILTIN_GLOSSARY if setting == "builtin" else Path(setting).expanduser())


def build_translator(llm: BaseLanguageModel | Runnable, glossary: Glossary | None = None) -> Runnable[str, list[str]]:
    """A question -> its English translation as a query variant; none for a question that is not
    Korean (ERP manuals are mostly English, and the demo model's Korean translations of English
    questions cost English questions 11 points of top-5 on Odoo) or a translation that is unusable."""
    chain = TRANSLATE | llm | StrOutputParser()

    def translate(question: str, config: RunnableConfig) -> list[str]:
        if detect_language(question) != "ko":
            return []
        hint = glossary.hint(question) if glossary else ""
        translated = chain.invoke({"question": question, "target": TRANSLATION_TARGET["en"], "terms": hint}, config)
        return usable_translation(translated, question, "en")

    return RunnableLambda(translate, name="translate_question")


def usable_translation(translated: str, question: str, target: Language) -> list[str]:
    """The translation as a query variant, or none when it is not one line in the target language."""
    candidate = translated.strip().strip('"').strip()
    usable = (
        candidate
        and "\n" not in candidate
        and len(candidate) <= 3 * len(question) + 50
        and detect_language(candidate, target) == target
    )
    return [candidate] if usable else []
