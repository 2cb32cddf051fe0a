import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from erp_chatbot.chains.respond import sources_of
from erp_chatbot.chains.steps import usable_rewrite
from erp_chatbot.memory.history import InvalidSessionId, validate_session_id


@pytest.mark.parametrize("good", ["abc", "user-1:session_2", "a.b@c", "x" * 128])
def test_valid_session_ids(good):
    assert validate_session_id(good) == good


@pytest.mark.parametrize("bad", ["", None, 42, "x" * 129, "has space", "semi;colon", "-leading", "키"])
def test_invalid_session_ids(bad):
    with pytest.raises(InvalidSessionId):
        validate_session_id(bad)


HISTORY = [HumanMessage("공급업체 청구서는 어떻게 승인하나요?"), AIMessage("청구서 메뉴에서 승인을 누릅니다.")]


def test_a_plausible_rewrite_is_kept():
    assert usable_rewrite(" 공급업체 청구서는 누가 승인하나요? ", "그럼 승인은 누가 해?", HISTORY) == (
        "공급업체 청구서는 누가 승인하나요?"
    )


@pytest.mark.parametrize(
    "rewrite",
    [
        "**ERP > 공급업체 > 청구서 > 승인**",  # an answer, not a question
        "Who approves vendor bills?",  # wrong language
        "공급업체 청구서는\n누가 승인하나요?",  # several lines
        "",
    ],
)
def test_an_implausible_rewrite_falls_back_to_the_previous_question(rewrite):
    assert usable_rewrite(rewrite, "그럼 승인은 누가 해?", HISTORY) == (
        "공급업체 청구서는 어떻게 승인하나요? 그럼 승인은 누가 해?"
    )


def test_sources_are_one_per_page_best_first():
    docs = [
        Document("a", metadata={"source": "a.md", "title": "A", "score": 0.8}),
        Document("b", metadata={"source": "b.md", "title": "B", "score": 0.9}),
        Document("a2", metadata={"source": "a.md", "title": "A", "score": 0.95}),
    ]
    assert sources_of(docs) == [
        {"source": "a.md", "title": "A", "score": 0.95},
        {"source": "b.md", "title": "B", "score": 0.9},
    ]
