"""The translation glossary: which ERP terms of a Korean question the translator is told about."""

import pytest

from erp_chatbot.chains.translation import BUILTIN_GLOSSARY, Glossary, GlossaryError, load_glossary


def test_terms_match_with_or_without_spaces_and_with_particles_after_them():
    glossary = Glossary({"총괄 발주": "blanket order", "공급업체": "vendor"})
    assert glossary.matches("공급업체와 총괄발주는 어떻게 등록하나요?") == [
        ("공급업체", "vendor"),
        ("총괄 발주", "blanket order"),
    ]
    assert glossary.hint("총괄 발주를 만들려면?") == "\nGlossary: 총괄 발주 = blanket order"


def test_the_longest_term_wins_and_a_term_inside_a_word_does_not_match():
    glossary = Glossary({"품질 검사": "quality check", "품질 검사 구역": "quality control location", "입고": "receipt"})
    assert glossary.matches("품질 검사 구역으로 옮기려면?") == [("품질 검사 구역", "quality control location")]
    assert glossary.matches("재입고는 어떻게 하나요?") == []  # 입고 inside another word
    assert glossary.hint("재고는 어디서 보나요?") == ""  # no term: the translation prompt is unchanged


def test_the_bundled_glossary_loads_and_none_turns_it_off():
    glossary = Glossary.load(BUILTIN_GLOSSARY)
    assert glossary.terms["총괄 발주"] == "blanket order" and len(glossary.terms) > 100
    assert load_glossary("none") is None and load_glossary("builtin").digest == glossary.digest


def test_a_malformed_glossary_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_text("# comment\n재고 이동\tstock move\n총괄 발주 blanket order\n", encoding="utf-8")
    with pytest.raises(GlossaryError, match=r"terms.tsv:3: expected 'Korean term<TAB>English term'"):
        Glossary.load(path)


def test_the_digest_follows_the_entries():
    assert Glossary({"발주": "purchase order"}).digest != Glossary({"발주": "order"}).digest
