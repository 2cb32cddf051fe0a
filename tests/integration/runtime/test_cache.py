"""The response cache: both backends on real parts, keys that never serve a wrong answer."""

import shutil
import time
import uuid

import httpx
import pytest
import redis
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import Generation
from langchain_core.runnables import RunnableLambda

from erp_chatbot import ERPChatbot
from erp_chatbot.runtime.cache import AnswerCache, LRUResponseCache, RedisResponseCache, normalise_question
from tests.conftest import SAMPLE_KNOWLEDGE, ingest_folder, tiny_settings


def gen(text: str) -> list[Generation]:
    return [Generation(text=text)]


@pytest.fixture
def redis_cache(redis_client):
    cache = RedisResponseCache(redis_client, max_entries=3, ttl_seconds=3600, prefix=f"test-cache:{uuid.uuid4().hex}:")
    yield cache
    cache.clear()


def test_lru_bounds_entries_by_recent_use():
    cache = LRUResponseCache(max_entries=2, ttl_seconds=60, max_bytes=10_000)
    cache.update("a", "m", gen("A"))
    cache.update("b", "m", gen("B"))
    assert cache.lookup("a", "m")[0].text == "A"  # a is now the most recent
    cache.update("c", "m", gen("C"))
    assert cache.lookup("b", "m") is None and cache.lookup("a", "m") and cache.lookup("c", "m")
    assert cache.lookup("a", "other-model") is None


def test_lru_expires_and_bounds_bytes():
    cache = LRUResponseCache(max_entries=100, ttl_seconds=0.05, max_bytes=10_000)
    cache.update("a", "m", gen("A"))
    time.sleep(0.06)
    assert cache.lookup("a", "m") is None
    small = LRUResponseCache(max_entries=100, ttl_seconds=60, max_bytes=300)
    for i in range(5):
        small.update(str(i), "m", gen("x" * 80))
    assert len(small) < 5 and small.lookup("4", "m") is not None
    small.update("huge", "m", gen("y" * 1000))
    assert small.lookup("huge", "m") is None


def test_redis_backend_bounds_entries_by_recent_use(redis_cache, redis_client):
    for name in "abc":
        redis_cache.update(name, "m", gen(name.upper()))
    assert redis_cache.lookup("a", "m")[0].text == "A"
    redis_cache.update("d", "m", gen("D"))
    assert len(redis_cache) == 3
    assert redis_cache.lookup("b", "m") is None
    assert [redis_cache.lookup(n, "m")[0].text for n in "acd"] == ["A", "C", "D"]
    key = redis_client.zrange(redis_cache.recency, 0, 0)[0]
    assert 3590 <= redis_client.ttl(key) <= 3600
    redis_cache.clear()
    assert len(redis_cache) == 0 and redis_cache.lookup("a", "m") is None


def test_question_normalisation_is_never_semantic():
    assert normalise_question("How do I approve a bill?") == normalise_question("  how do I  approve a BILL ")
    assert normalise_question("ＰＯ 승인？") == normalise_question("PO 승인")
    assert normalise_question("Who approves bills?") != normalise_question("Who does not approve bills?")


def test_a_broken_cache_never_fails_a_request(caplog):
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache = AnswerCache(RedisResponseCache(dead, max_entries=10, ttl_seconds=10), model_version="m")
    key = cache.key("q", ["c1"], "idx", "prompt")
    assert cache.get(key) is None and cache.get_turn(key) is None
    cache.put(key, "answer")
    assert cache.stats.errors == 3 and "response cache" in caplog.text


class LLMCalls(BaseCallbackHandler):
    def __init__(self):
        self.count = 0

    def on_chat_model_start(self, *args, **kwargs):
        self.count += 1


@pytest.fixture
def cache_prefix(redis_client):
    prefix = f"test-answers:{uuid.uuid4().hex}:"
    yield prefix
    RedisResponseCache(redis_client, max_entries=1, ttl_seconds=1, prefix=prefix).clear()


def cached_bot(tmp_path, tiny_lm_dir, e5_dir, index_dir, prefix, **overrides):
    settings = tiny_settings(
        tmp_path, tiny_lm_dir, e5_dir, index_dir, cache={"enabled": True, "redis_prefix": prefix}, **overrides
    )
    return ERPChatbot.from_settings(settings)


def test_second_ask_is_served_from_cache_without_the_llm(
    tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix, session_id
):
    bot = cached_bot(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix)
    first = bot.ask("How do I approve a vendor bill?")
    calls = LLMCalls()
    config = {"configurable": {"session_id": session_id}, "callbacks": [calls]}
    out = bot.as_runnable().invoke({"question": "How do I approve a vendor bill?"}, config)
    assert out["cached"] and out["answer"] == first.text and calls.count == 0
    assert out["sources"] == [s.model_dump() for s in first.sources]
    assert len(bot.history.messages(session_id)) == 2  # a cached answer is still part of the conversation
    chunks = list(bot.stream("How do I approve a vendor bill?"))
    assert "".join(chunks).strip() == first.text
    assert bot.ask("How do I reject a vendor bill?").cached is False
    assert bot.health()["cache"] == {"hits": 2, "misses": 2, "errors": 0}


def test_declined_answers_are_not_cached(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix):
    bot = cached_bot(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix, retrieval={"score_threshold": 0.99})
    assert not bot.ask("What is the capital of France?").covered
    assert bot.health()["cache"] == {"hits": 0, "misses": 0, "errors": 0}


def test_answers_grounding_flags_are_not_cached(
    tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix, redis_client, session_id
):
    # Real e5, FAISS and Redis (history and cache); the chat model is LangChain's fake, scripted:
    # no real model can be made to invent a button on demand.
    replies = [
        "1. Open **Accounting > Vendors > Bills**.\n2. Click **Approve All**.\n",  # no section has "Approve All"
        "1. Open **Accounting > Vendors > Bills**.\n2. Click **Approve All**.\n",
        "Open **Accounting > Vendors > Bills** and click **Approve**.",
        "It is the bill a vendor sends you.",
    ]
    base = cached_bot(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix)
    fake = GenericFakeChatModel(messages=iter([AIMessage(reply) for reply in replies]))
    bot = ERPChatbot(
        settings=base.settings,
        llm=fake,
        embeddings=base.embeddings,
        index=base.index,
        history=base.history,
        cache=base.cache,
    )
    first = bot.ask("How do I approve a vendor bill?")
    assert first.removed == ["2. Click **Approve All**."] and "Approve All" not in first.text
    assert first.text.startswith("1. Open **Accounting > Vendors > Bills**.\n\nThe documents explain this in")
    assert not first.grounded and first.unsupported == []  # what is shown names nothing unsupported
    again = bot.ask("How do I approve a vendor bill?")
    assert not again.cached and bot.health()["cache"]["hits"] == 0
    assert not list(redis_client.scan_iter(f"{cache_prefix}*"))  # neither the answer nor the turn was stored
    supported = bot.ask("How do I approve vendor bills?")
    assert supported.grounded and not supported.vague and bot.ask("How do I approve vendor bills?").cached
    vague = bot.ask("What is a vendor bill?")  # names nothing
    assert vague.grounded and vague.vague and vague.text.count("See the documents for the steps — ") == 1
    again = bot.ask("What is a vendor bill?")  # not wrong, only short: cached with the passage quoted after it
    assert again.cached and again.text == vague.text
    out = bot.as_runnable().invoke({"question": "What is a vendor bill?"}, {"configurable": {"session_id": session_id}})
    assert out["cached"] and out["answer"].strip() == vague.text and out["grounding"]["note"].strip() in vague.text


@pytest.mark.slow  # builds several indexes and chatbots: ~20 s
def test_changed_model_settings_or_index_never_get_old_answers(tmp_path, tiny_lm_dir, e5_dir, embeddings, cache_prefix):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "invoicing", docs)
    index_dir = tmp_path / "index"

    def reindex():
        ingest_folder(docs, index_dir, embeddings)

    reindex()
    question = "How do I issue a credit note?"
    bot = cached_bot(tmp_path / "a", tiny_lm_dir, e5_dir, index_dir, cache_prefix)
    assert not bot.ask(question).cached and bot.ask(question).cached

    other_decoding = cached_bot(tmp_path / "b", tiny_lm_dir, e5_dir, index_dir, cache_prefix, llm={"max_new_tokens": 9})
    assert not other_decoding.ask(question).cached

    page = docs / "customer-invoices.en.md"
    page.write_text(page.read_text().replace("Add Credit Note", "Create Credit Note"))
    reindex()
    after_reindex = cached_bot(tmp_path / "c", tiny_lm_dir, e5_dir, index_dir, cache_prefix)
    assert not after_reindex.ask(question).cached


def test_turn_keys_cover_roles_index_chain_and_model():
    cache = AnswerCache(LRUResponseCache(max_entries=10, ttl_seconds=60, max_bytes=10_000), model_version="m1")
    other_model = AnswerCache(cache.backend, model_version="m2")
    key = cache.turn_key("How do I approve a bill?", ["buyer", "clerk"], "idx1", "chain1")
    assert key == cache.turn_key("how do I approve a bill", ["clerk", "buyer"], "idx1", "chain1")
    others = [
        cache.turn_key("How do I approve a bill?", ["clerk"], "idx1", "chain1"),
        cache.turn_key("How do I approve a bill?", None, "idx1", "chain1"),
        cache.turn_key("How do I approve a bill?", ["buyer", "clerk"], "idx2", "chain1"),
        cache.turn_key("How do I approve a bill?", ["buyer", "clerk"], "idx1", "chain2"),
        other_model.turn_key("How do I approve a bill?", ["buyer", "clerk"], "idx1", "chain1"),
        cache.turn_key("How do I reject a bill?", ["buyer", "clerk"], "idx1", "chain1"),
    ]
    assert len({key, *others}) == 7
    cache.put_turn(key, {"answer": "Approve it.", "sources": []})
    assert cache.get_turn(key) == {"answer": "Approve it.", "sources": []}
    assert all(cache.get_turn(other) is None for other in others)
    assert cache.stats.as_dict() == {"hits": 1, "misses": 0, "errors": 0}  # the chain counts its own miss


@pytest.fixture
def cached_server(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix):
    from erp_chatbot.server.app import create_app
    from erp_chatbot.server.background import running_server

    bot = cached_bot(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, cache_prefix)
    with running_server(create_app(bot)) as url:
        yield bot, url


def invoke(url: str, question: str, session_id: str):
    body = {"input": {"question": question}, "config": {"configurable": {"session_id": session_id}}}
    return httpx.post(f"{url}/erp/invoke", json=body, timeout=60)


def test_cached_first_turns_are_answered_without_the_chain(cached_server, redis_client):
    bot, url = cached_server
    question = "How do I approve a vendor bill?"
    first = invoke(url, question, f"s-{uuid.uuid4().hex}").json()
    assert first["output"]["cached"] is False and first["output"]["retrieval_seconds"] > 0

    answered_by_chain = bot._chain

    def no_chain(_):
        raise AssertionError("the chain ran for a cached first turn")

    bot._chain = RunnableLambda(no_chain)  # from here on only the cache can answer
    session = f"s-{uuid.uuid4().hex}"
    again = invoke(url, "  how do I approve a VENDOR bill ", session)
    assert again.status_code == 200, again.text
    output = again.json()["output"]
    assert output["cached"] is True and set(again.json()) == set(first) and set(output) == set(first["output"])
    assert output["question"] == "how do I approve a VENDOR bill" == output["standalone_question"]
    for field in ("answer", "sources", "grounding", "language"):
        assert output[field] == first["output"][field]
    stored = bot.history.messages(session)
    assert [m.content for m in stored] == [output["question"], output["answer"]]
    # the session's owner is checked first: someone else's session still gets the chain's 403
    taken = f"s-{uuid.uuid4().hex}"
    assert bot.history.claim(taken, "someone-else")
    assert invoke(url, question, taken).status_code == 403

    bot._chain = answered_by_chain
    follow_up = invoke(url, question, session).json()["output"]  # the session has history now
    assert follow_up["retrieval_seconds"] > 0
