"""The chain and ERPChatbot end to end: tiny local GPT-2 (plumbing), real e5, FAISS and Redis."""

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from erp_chatbot import ERPChatbot
from erp_chatbot.chains.prompts import NOT_COVERED
from erp_chatbot.memory.history import InvalidSessionId
from erp_chatbot.models.llm import LocalChatHuggingFace
from tests.conftest import tiny_settings


class LLMCalls(BaseCallbackHandler):
    def __init__(self):
        self.prompts: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.prompts.append(str(messages))

    def on_llm_start(self, serialized, prompts, **kwargs):
        self.prompts.extend(prompts)


@pytest.fixture(scope="module")
def bot(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir):
    settings = tiny_settings(tmp_path_factory.mktemp("home"), tiny_lm_dir, e5_dir, sample_index_dir)
    return ERPChatbot.from_settings(settings)


def config(session_id, calls=None):
    return {"configurable": {"session_id": session_id}, "callbacks": [calls] if calls else []}


def test_chat_template_models_are_chat_wrapped(bot):
    assert isinstance(bot.llm, LocalChatHuggingFace)


def test_first_turn_skips_condensing_then_follow_up_uses_history(bot, session_id, redis_client):
    chain, calls = bot.as_runnable(), LLMCalls()
    first = chain.invoke({"question": "공급업체 청구서는 어떻게 승인하나요?"}, config(session_id, calls))
    assert len(calls.prompts) == 1  # the answer only
    assert first["standalone_question"] == "공급업체 청구서는 어떻게 승인하나요?"
    assert first["sources"][0]["source"] == "purchasing/vendor-bill-approval.ko.md"
    assert first["language"] == "ko" and first["answer"]
    assert "청구서" in calls.prompts[0] and '<document index="1"' in calls.prompts[0]
    assert redis_client.llen(f"context:{session_id}") == 2

    calls.prompts.clear()
    second = chain.invoke({"question": "그럼 승인은 누가 해?"}, config(session_id, calls))
    assert len(calls.prompts) == 2  # condense, then answer
    assert "공급업체 청구서는 어떻게 승인하나요?" in calls.prompts[0]  # the history reached the rewrite
    # the random model cannot rewrite, so the fallback joins the previous question to the follow-up
    assert "청구서" in second["standalone_question"]
    assert any(s["source"] == "purchasing/vendor-bill-approval.ko.md" for s in second["sources"])
    assert redis_client.llen(f"context:{session_id}") == 4


def test_nothing_above_threshold_declines_without_the_llm(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, session_id):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, retrieval={"score_threshold": 0.99})
    strict = ERPChatbot.from_settings(settings)
    calls = LLMCalls()
    out = strict.as_runnable().invoke({"question": "What is the capital of France?"}, config(session_id, calls))
    assert calls.prompts == [] and out["answer"] == NOT_COVERED["en"] and out["sources"] == []
    answer = strict.ask("프랑스의 수도는 어디인가요?")
    assert answer.text == NOT_COVERED["ko"] and not answer.covered


def test_ask_returns_a_complete_answer_object(bot, session_id):
    answer = bot.ask("How do I request annual leave?", session_id=session_id)
    assert answer.session_id == session_id and answer.language == "en" and answer.text
    assert answer.sources[0].source == "hr/leave-requests.en.md"
    assert answer.sources[0].title == "Requesting and approving leave"
    assert 0 < answer.timings["retrieval"] < answer.timings["total"]
    assert bot.ask("How do I request annual leave?").session_id != session_id  # a new session


def test_stream_yields_the_answer_and_stores_the_turn(bot, session_id):
    # The random model writes no sentence end, so its line is shown once it is complete and checked
    # (chains.line_gate.LineGate; sentence-by-sentence streaming: tests/unit/chains/test_rag.py).
    chunks = list(bot.stream("재고 이동은 어디서 확인하나요?", session_id=session_id))
    assert chunks and all(chunks)
    stored = bot.history.messages(session_id)
    assert [m.type for m in stored] == ["human", "ai"] and stored[1].content == "".join(chunks)


async def test_async_paths(bot, session_id):
    answer = await bot.aask("How do I issue a credit note?", session_id=session_id)
    assert answer.sources[0].source == "invoicing/customer-invoices.en.md"
    chunks = [c async for c in bot.astream("And a full refund?", session_id=session_id)]
    assert chunks and all(chunks)
    assert len(bot.history.messages(session_id)) == 4


def test_batch_answers_each_question_in_its_own_session(bot):
    answers = bot.batch(["How do I count stock?", "경비 보고서는 언제까지 제출하나요?"])
    assert [a.sources[0].source for a in answers] == ["inventory/cycle-counts.en.md", "hr/expense-claims.ko.md"]
    assert answers[0].session_id != answers[1].session_id
    with pytest.raises(ValueError, match="2 questions but 1 session ids"):
        bot.batch(["a?", "b?"], session_ids=["s1"])


def test_bad_input_is_refused_with_a_clear_error(bot):
    with pytest.raises(ValueError, match="question is empty"):
        bot.ask("   ")
    with pytest.raises(InvalidSessionId):
        bot.ask("How do I count stock?", session_id="not valid!")
    with pytest.raises(InvalidSessionId, match="session_id is required"):
        bot.as_runnable().invoke({"question": "How do I count stock?"})


def test_health_reports_model_index_and_redis(bot):
    health = bot.health()
    assert health["index"]["chunks"] > 0 and health["index"]["embedding_model"] == "multilingual-e5-small"
    assert health["memory"] == {"backend": "redis", "ok": True}


def test_translation_adds_a_query_variant_for_retrieval(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, session_id):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, retrieval={"translate_queries": True})
    translating = ERPChatbot.from_settings(settings)
    calls = LLMCalls()
    out = translating.as_runnable().invoke({"question": "재고 이동은 어디서 확인하나요?"}, config(session_id, calls))
    assert len(calls.prompts) == 2  # the translation, then the answer
    assert "You translate questions" in calls.prompts[0] and "into English" in calls.prompts[0]
    assert "Glossary: 재고 이동 = stock move" in calls.prompts[0]  # the bundled glossary's words for the term
    assert out["sources"] and out["answer"]  # the random model's translation is unusable: the original still serves


def test_a_team_glossary_replaces_the_bundled_one(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, session_id):
    glossary = tmp_path / "terms.tsv"
    glossary.write_text("# our own names\n재고 이동\tInventory movements\n", encoding="utf-8")
    retrieval = {"translate_queries": True, "translation_glossary": str(glossary)}
    bot = ERPChatbot.from_settings(tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, retrieval=retrieval))
    calls = LLMCalls()
    bot.as_runnable().invoke({"question": "재고이동은 어디서 확인하나요?"}, config(session_id, calls))
    assert "Glossary: 재고 이동 = Inventory movements" in calls.prompts[0]  # matched without the space
    assert "stock move" not in calls.prompts[0]
    retrieval["translation_glossary"] = "builtin"
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, retrieval=retrieval)
    bundled = ERPChatbot.from_settings(settings)
    assert bundled.chain_id != bot.chain_id  # cached first turns are not shared across glossaries


def test_a_glossary_that_cannot_be_read_stops_the_bot_with_the_setting_to_fix(
    tmp_path, tiny_lm_dir, e5_dir, sample_index_dir
):
    from erp_chatbot.chains.translation import GlossaryError

    retrieval = {"translate_queries": True, "translation_glossary": str(tmp_path / "missing.tsv")}
    with pytest.raises(GlossaryError, match=r"retrieval\.translation_glossary"):
        ERPChatbot.from_settings(tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, retrieval=retrieval))


def test_only_a_one_line_translation_in_the_target_language_is_used():
    from erp_chatbot.chains.translation import usable_translation

    question = "재고 이동은 어디서 확인하나요?"
    assert usable_translation(' "Where do I check stock moves?" ', question, "en") == ["Where do I check stock moves?"]
    assert usable_translation("재고 이동을 확인하는 곳", question, "en") == []
    assert usable_translation("Where?\nInventory > Reporting", question, "en") == []
    assert usable_translation("word " * 100, question, "en") == []
