"""Which language a question is in: Korean when Hangul makes up a fair share of its letters."""

from __future__ import annotations

from typing import Literal

Language = Literal["ko", "en"]


def detect_language(text: str, default: Language = "en") -> Language:
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    if hangul == 0 and latin == 0:
        return default
    # ERP terms often stay in English inside Korean questions ("PO 승인은?"): weigh Hangul up.
    return "ko" if hangul * 3 >= latin else "en"
