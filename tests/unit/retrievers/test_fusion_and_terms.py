"""BM25 terms (Kiwi morphemes, light English stemming) and score fusion."""

import pytest

from erp_chatbot.knowledge.lexical import terms
from erp_chatbot.retrievers.fusion import fuse


def test_korean_particles_and_endings_do_not_hide_nouns():
    assert terms("재고를 이동했습니다") == terms("재고는 이동") == ["재고", "이동"]
    assert "확인" in terms("재고 이동은 어디서 확인하나요?")


def test_english_words_are_lowered_stemmed_and_stopwords_dropped():
    assert terms("How do I approve the Vendor Bills?") == terms("approving vendor bill") == ["approv", "vendor", "bill"]


def test_latin_terms_and_codes_inside_korean_meet_english_pages():
    found = terms("SO-2024-001 주문의 vendor bill을 승인하려면?")
    assert {"vendor", "bill", "승인", "주문"} <= set(found) and any("2024" in t for t in found)


def test_rrf_adds_reciprocal_ranks_with_weights():
    dense = {"a": 0.9, "b": 0.8, "c": 0.1}  # ranks a, b, c
    sparse = {"a": 1.0, "b": 9.0, "c": 5.0}  # ranks b, c, a
    assert fuse([dense, sparse], [1, 1], "rrf") == ["b", "a", "c"]
    assert fuse([dense, sparse], [1, 0], "rrf") == ["a", "b", "c"]
    assert fuse([dense, sparse], [0, 1], "rrf") == ["b", "c", "a"]


def test_zscore_standardises_over_the_given_distributions():
    dense = {"a": 0.90, "b": 0.86, "c": 0.85}
    sparse = {"a": 1.0, "b": 9.0, "c": 0.0}
    assert fuse([dense, sparse], [1, 1], "zscore") == ["b", "a", "c"]  # over the candidates alone
    # over a corpus where cosines barely vary, 0.04 ahead is a lot; BM25 varies a great deal
    assert fuse([dense, sparse], [1, 1], "zscore", distributions=[(0.80, 0.02), (2.0, 20.0)]) == ["a", "b", "c"]
    assert fuse([dense, sparse], [1, 1], "zscore", distributions=[(0.80, 0.5), (2.0, 1.0)]) == ["b", "a", "c"]


def test_fusion_refuses_mismatched_weights():
    with pytest.raises(ValueError, match="2 score lists, 1 weights"):
        fuse([{}, {}], [1], "rrf")
