"""The chat adapter's logic over a stub chain: what the chat view shows, and the turns it seeds."""

from langchain_core.runnables import RunnableLambda

from erp_chatbot.chains.chat import after_answer, chat_runnable, earlier_turns
from erp_chatbot.schemas import ChatMessage, Conversation, conversation_type

CHUNKS = [
    {"question": "q", "language": "ko", "sources": [{"source": "a.md", "title": "A", "score": 0.9}]},
    {"answer": "1. **재고 ‣ 이동**"},
    {"answer": " 메뉴를 엽니다."},
    {"grounding": {"declined": False, "supported": False, "unsupported": ["Stock ‣ Moves"], "note": ""}},
]


def stub_chain(seen: list):
    def stream(inputs, config=None):
        seen.append(inputs)
        yield from CHUNKS

    return RunnableLambda(stream)


def test_the_answer_streams_then_its_sources_and_what_grounding_missed():
    seen: list = []
    runnable = chat_runnable(lambda: stub_chain(seen), Conversation)
    pieces = list(runnable.stream({"messages": [{"type": "human", "content": "재고 이동은?"}]}))
    assert pieces[:2] == ["1. **재고 ‣ 이동**", " 메뉴를 엽니다."]
    assert pieces[2] == "\n\n---\n출처:\n- A (a.md)\n\n_문서에서 찾지 못한 내용: Stock ‣ Moves_"
    assert seen == [{"question": "재고 이동은?"}]


def test_no_sources_no_block():
    assert after_answer({"language": "en", "sources": [], "grounding": {"unsupported": []}}) == ""


def test_earlier_turns_pair_questions_with_answers_without_the_sources_block():
    messages = [
        ChatMessage(type="human", content="How?"),
        ChatMessage(type="ai", content="Like this.\n\n---\nSources:\n- A (a.md)"),
        ChatMessage(type="system", content="be brief"),
        ChatMessage(type="human", content="And then?"),
    ]
    assert earlier_turns(messages) == [("How?", "Like this.")]


def test_a_conversation_must_end_with_a_question_within_the_limit():
    import pytest
    from pydantic import ValidationError

    limited = conversation_type(10)
    assert limited.model_validate({"messages": [{"type": "human", "content": " short? "}]}).messages[-1].content == (
        "short?"
    )
    for bad in ([], [{"type": "ai", "content": "hi"}], [{"type": "human", "content": "far too long a question"}]):
        with pytest.raises(ValidationError):
            limited.model_validate({"messages": bad})
