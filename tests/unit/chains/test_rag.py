"""The whole chain's logic in seconds: LangChain's fake chat model, an in-memory history and a stub
retriever. The same behaviours run against the real parts in tests/integration/chains/test_chain.py and
tests/integration/chains/test_answer_modes.py."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.retrievers import BaseRetriever

from erp_chatbot.chains.passages import LEAD
from erp_chatbot.chains.prompts import NOT_COVERED
from erp_chatbot.chains.rag import build_rag_chain
from erp_chatbot.chains.turn import RagOptions
from erp_chatbot.memory.history import InMemoryChatHistory
from erp_chatbot.settings import MemorySettings

APPROVAL = Document(
    "Purchase orders > Order approval\nOrders above 20,000,000 KRW need the approval of the **purchasing "
    "director**; the button **Confirm Order** then shows **Request Approval** instead.",
    id="a",
    metadata={"source": "po.md", "title": "Purchase orders", "section": "Order approval", "score": 0.9},
)
RFQ = Document(
    "Purchase orders > Request for quotation\nGo to **Purchase > Orders > Requests for Quotation** and click **New**.",
    id="r",
    metadata={"source": "po.md", "title": "Purchase orders", "section": "Request for quotation", "score": 0.8},
)


class StubRetriever(BaseRetriever):
    documents: list[Document]
    calls: list[dict]

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None, **options: Any) -> list[Document]:
        self.calls.append({"query": query, **options})
        return list(self.documents)


class Prompts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.seen.append(str(messages))


def fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(reply) for reply in replies]))


def chain(replies=(), documents=(APPROVAL, RFQ), rewrites=(), yes=None, **options):
    history = InMemoryChatHistory(MemorySettings(redis_url=None))
    retriever = StubRetriever(documents=list(documents), calls=[])
    rewriter = fake(*rewrites) if rewrites else None
    built = build_rag_chain(
        fake(*replies), retriever, history, RagOptions(**options), rewriter=rewriter, yes_probability=yes
    )
    return built, retriever, history


class Judge:
    """The model's P(yes) that the sections answer, as a fixed number; remembers what it was asked."""

    def __init__(self, p: float) -> None:
        self.p, self.asked = p, []

    def __call__(self, messages, config=None) -> float:
        self.asked.append(messages[-1].content)
        return self.p


def ask(built, question: str, session: str = "s1", prompts: Prompts | None = None) -> dict:
    config = {
        "configurable": {"session_id": session, "roles": ["purchasing"]},
        "callbacks": [prompts] if prompts else [],
    }
    final: dict = {}
    for piece in built.stream({"question": question}, config):
        for key, value in piece.items():
            final[key] = final.get(key, "") + value if key == "answer" else value
    return final


def test_extract_mode_answers_with_the_best_section_in_its_own_words_and_no_llm():
    built, retriever, history = chain(mode="extract")  # a fake model with no reply fails if called
    out = ask(built, "구매 주문 승인은 누가 하나요?")
    assert out["answer"].startswith(LEAD["ko"].format(heading="*Purchase orders* — *Order approval*") + "\n\n")
    assert "**purchasing director**" in out["answer"]
    assert "\n\n관련 내용은 *Purchase orders* — *Request for quotation* 부분에 있습니다:\n\nGo to" in out["answer"]
    assert [s["source"] for s in out["sources"]] == ["po.md"]
    assert out["grounding"]["supported"] and not out["grounding"]["declined"]
    assert retriever.calls[0]["roles"] == ["purchasing"]  # roles reach retrieval
    assert len(history.messages("s1")) == 2


def test_translated_passages_keep_the_lead_and_stream_each_sections_translation():
    first = "주문 금액이 20,000,000 KRW 를 넘으면 **purchasing director** 의 승인이 필요합니다."
    second = "**Purchase > Orders > Requests for Quotation** 으로 가서 **New** 를 클릭합니다."
    built, _, _ = chain(replies=[first, second], mode="extract", passage_language="question")
    prompts = Prompts()
    out = ask(built, "구매 주문 승인은 누가 하나요?", prompts=prompts)
    lead = LEAD["ko"].format(heading="*Purchase orders* — *Order approval*")
    assert out["answer"].startswith(f"{lead}\n\n{first}\n\n관련 내용은 ") and out["answer"].endswith(second)
    assert "Translate this passage into Korean" in prompts.seen[0] and "Orders above 20,000,000 KRW" in prompts.seen[0]
    assert out["grounding"]["supported"] and out["grounding"]["removed"] == []
    built, _, _ = chain(mode="extract", passage_language="question")  # no reply: the model is never asked
    english = ask(built, "Who approves purchase orders?")["answer"]
    assert english.startswith(LEAD["en"].format(heading="*Purchase orders* — *Order approval*") + "\n\nOrders above")


def test_a_translation_naming_what_no_section_holds_gives_way_to_the_sections_as_written():
    invented = "**구매 > 승인 요청** 메뉴에서 **승인** 버튼을 누릅니다."
    built, _, _ = chain(replies=[invented, "x"], mode="extract", passage_language="question")
    out = ask(built, "구매 주문 승인은 누가 하나요?")
    assert "승인 요청** 메뉴" not in out["answer"] and out["grounding"]["removed"] == [invented]
    lead = LEAD["ko"].format(heading="*Purchase orders* — *Order approval*")
    assert out["answer"].startswith(f"{lead}\n\nOrders above 20,000,000 KRW need the approval of the **purchasing")
    assert out["answer"].count(lead) == 1 and "\n\n\n" not in out["answer"]  # the lead shown once


def test_a_generated_line_naming_what_no_section_holds_is_replaced_by_the_section():
    reply = "1. Open **Purchase > Orders > Requests for Quotation**.\n2. Click **Approve All** in Accounting.\n"
    built, _, _ = chain(replies=[reply])
    out = ask(built, "How do I approve a purchase order?")
    shown, _, rest = out["answer"].partition("\n\n")
    assert shown == "1. Open **Purchase > Orders > Requests for Quotation**."
    assert "Approve All" not in out["answer"] and "**purchasing director**" in rest  # the section instead
    assert out["grounding"]["removed"] == ["2. Click **Approve All** in Accounting."]
    assert not out["grounding"]["supported"] and out["grounding"]["unsupported"] == []


def test_a_supported_generated_answer_streams_untouched():
    reply = "The **purchasing director** approves orders above 20,000,000 KRW."
    built, _, _ = chain(replies=[reply])
    out = ask(built, "Who approves purchase orders?")
    assert out["answer"] == reply and out["grounding"]["supported"] and out["grounding"]["note"] == ""


def test_a_p_yes_under_the_threshold_declines_without_generating():
    judge = Judge(0.2)
    built, _, _ = chain(yes=judge, check_coverage=("en",), decline_below={"en": 0.3})
    prompts = Prompts()
    out = ask(built, "How many vacation days do interns get?", prompts=prompts)
    assert out["answer"] == NOT_COVERED["en"] and out["sources"] == [] and prompts.seen == []
    assert out["grounding"]["declined"] and out["support"] == 0.2
    assert "purchasing director" in judge.asked[0] and judge.asked[0].endswith("Reply yes or no only.")


def test_a_p_yes_at_the_threshold_answers_and_unchecked_languages_are_never_asked():
    judge = Judge(0.3)
    reply = "The **purchasing director** approves them."
    built, _, _ = chain(replies=[reply], yes=judge, check_coverage=("en",), decline_below={"en": 0.3})
    assert ask(built, "Who gives purchase order approval?")["answer"] == reply
    built, _, _ = chain(mode="extract", yes=judge, check_coverage=("en",))
    assert ask(built, "구매 주문 승인은 누가 하나요?")["support"] is None and len(judge.asked) == 1
    assert "Request for quotation" in judge.asked[0]  # generating: the judge reads the prompt's sections


def test_extracting_the_judge_reads_the_opening_of_the_best_section_only():
    judge = Judge(0.9)
    built, _, _ = chain(mode="extract", yes=judge, check_coverage=("en",), judge_tokens=14)
    assert ask(built, "Who approves purchase orders?")["support"] == 0.9
    assert "Orders above 20,000,000" in judge.asked[0] and "Request for quotation" not in judge.asked[0]
    assert "Request Approval" not in judge.asked[0]  # cut after about 14 words


def test_a_generated_answer_reports_the_users_question_and_the_prompt_gets_the_standalone_one():
    reply = "The **purchasing director** approves them."
    built, _, history = chain(replies=[reply, reply], rewrites=["Who approves purchase orders above the limit?"])
    ask(built, "How do I approve a purchase order?")
    prompts = Prompts()
    out = ask(built, "And who approves it?", prompts=prompts)
    assert out["question"] == "And who approves it?" and history.messages("s1")[-2].content == "And who approves it?"
    assert out["standalone_question"] == "Who approves purchase orders above the limit?"
    assert "Question: Who approves purchase orders above the limit?" in prompts.seen[-1]


def test_a_follow_up_is_condensed_into_one_question_for_retrieval():
    built, retriever, _ = chain(mode="extract", rewrites=["구매 주문 승인은 누가 하나요?"])
    ask(built, "구매 주문 승인은 어떻게 하나요?")
    out = ask(built, "그럼 승인은 누가 해?")
    assert out["standalone_question"] == "구매 주문 승인은 누가 하나요?"
    assert retriever.calls[-1]["query"] == "구매 주문 승인은 누가 하나요?"


def test_no_retrieved_section_declines_in_the_question_language():
    built, _, _ = chain(documents=[])
    assert ask(built, "재고는 어디서 보나요?")["answer"] == NOT_COVERED["ko"]


@pytest.mark.parametrize("mode", ["generate", "extract"])
def test_a_session_is_required(mode):
    built, _, _ = chain(mode=mode, replies=["x"])
    with pytest.raises(ValueError, match="session_id is required"):
        built.invoke({"question": "Q?"}, {"configurable": {}})


def _streamed(gate, text, size):
    pieces = [gate.feed(text[i : i + size]) for i in range(0, len(text), size)]
    return [piece for piece in [*pieces, gate.close()] if piece]


def test_the_gate_streams_prose_by_sentence_and_holds_a_line_with_claims_until_it_is_checked():
    from erp_chatbot.chains.line_gate import LineGate

    text = "First you open the order. Then you check it. Go to **Purchase > Orders**.\n2. Click **Frobnicate**.\n"
    for size in (1, 4, 1000):
        gate = LineGate([APPROVAL, RFQ], "How?")
        shown = _streamed(gate, text, size)
        assert "".join(shown) == "First you open the order. Then you check it. Go to **Purchase > Orders**.\n"
        assert gate.removed == ["2. Click **Frobnicate**."] and gate.shown == "".join(shown)
    gate = LineGate([APPROVAL], "How?")
    assert _streamed(gate, "One. Two. Three", 2)[:2] == ["One. ", "Two. "]  # sentence by sentence


def test_nothing_after_a_removed_line_is_shown_even_within_the_same_streamed_piece():
    from erp_chatbot.chains.line_gate import LineGate

    gate = LineGate([APPROVAL, RFQ], "How?")
    assert _streamed(gate, "2. Click **Frobnicate**.\n\nThen you are done.\n", 1000) == []
    assert gate.removed == ["2. Click **Frobnicate**."] and gate.shown == ""


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.count = 0

    def on_llm_new_token(self, token, **kwargs):
        self.count += 1


def test_generation_stops_at_the_first_removed_line():
    reply = "2. Click **Frobnicate**.\n" + "More words that nobody will see. " * 40
    built, _, _ = chain(replies=[reply])
    tokens = Tokens()
    config = {"configurable": {"session_id": "s1"}, "callbacks": [tokens]}
    out = "".join(piece.get("answer", "") for piece in built.stream({"question": "How do I approve it?"}, config))
    assert "Frobnicate" not in out and "**purchasing director**" in out  # the sections instead
    assert tokens.count < 20  # the model's stream was left after the removed line, not read to its end (~240)
