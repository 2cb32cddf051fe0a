"""Chat history against the real Redis (and the in-process fallback, same contract)."""

import json

import pytest
from langchain_core.messages import messages_from_dict

from erp_chatbot.memory.history import InMemoryChatHistory, InvalidSessionId, RedisChatHistory, build_history
from erp_chatbot.settings import MemorySettings
from tests.conftest import REDIS_URL


def redis_history(**overrides) -> RedisChatHistory:
    return RedisChatHistory(MemorySettings(redis_url=REDIS_URL, **overrides))


def test_turns_are_stored_under_context_key_in_langchain_format(redis_client, session_id):
    history = redis_history()
    history.add_turn(session_id, "재고 이동은 어디서?", "재고 > 보고 > 재고 이동")
    key = f"context:{session_id}"
    raw = redis_client.lrange(key, 0, -1)
    messages = messages_from_dict([json.loads(item) for item in reversed(raw)])
    assert [(m.type, m.content) for m in messages] == [
        ("human", "재고 이동은 어디서?"),
        ("ai", "재고 > 보고 > 재고 이동"),
    ]
    assert 1790 <= redis_client.ttl(key) <= 1800


def test_window_keeps_the_last_ten_turns_in_redis(redis_client, session_id):
    history = redis_history()
    for turn in range(13):
        history.add_turn(session_id, f"q{turn}", f"a{turn}")
    assert redis_client.llen(f"context:{session_id}") == 20
    contents = [m.content for m in history.messages(session_id)]
    assert contents[0] == "q3" and contents[-1] == "a12" and len(contents) == 20


def test_ttl_slides_on_read(redis_client, session_id):
    history = redis_history()
    history.add_turn(session_id, "q", "a")
    redis_client.expire(f"context:{session_id}", 5)
    assert len(history.messages(session_id)) == 2
    assert redis_client.ttl(f"context:{session_id}") > 1700


def test_expired_session_is_empty(redis_client, session_id):
    history = redis_history(ttl_seconds=1)
    history.add_turn(session_id, "q", "a")
    redis_client.pexpire(f"context:{session_id}", 1)
    import time

    time.sleep(0.05)
    assert history.messages(session_id) == []


def test_invalid_session_never_reaches_redis(redis_client):
    history = redis_history()
    before = redis_client.dbsize()
    with pytest.raises(InvalidSessionId):
        history.add_turn("bad id*", "q", "a")
    assert redis_client.dbsize() == before


def test_in_process_history_has_the_same_contract():
    history = InMemoryChatHistory(MemorySettings(redis_url=None, window_turns=2))
    for turn in range(3):
        history.add_turn("s1", f"q{turn}", f"a{turn}")
    assert [m.content for m in history.messages("s1")] == ["q1", "a1", "q2", "a2"]
    assert history.messages("other") == []
    with pytest.raises(InvalidSessionId):
        history.messages("")


def test_without_redis_url_history_is_in_process_and_says_so(caplog):
    assert isinstance(build_history(MemorySettings(redis_url=None)), InMemoryChatHistory)
    assert "in this process only" in caplog.text


@pytest.mark.parametrize("step", ["read", "write"])
def test_owner_and_history_expire_together(redis_client, session_id, step):
    # #31: the owner key's TTL was refreshed when a request started and the history's when it
    # ended, so after a long request the owner key expired first and another user could claim
    # the session and read its history.
    history = redis_history(ttl_seconds=15)
    assert history.claim(session_id, "alice")
    history.add_turn(session_id, "q", "a")
    redis_client.expire(f"session-owner:{session_id}", 2)  # as if the request had taken 13 s
    history.messages(session_id) if step == "read" else history.add_turn(session_id, "q2", "a2")
    owner_ttl = redis_client.pttl(f"session-owner:{session_id}")
    history_ttl = redis_client.pttl(f"context:{session_id}")
    assert abs(owner_ttl - history_ttl) < 50 and owner_ttl > 14_000
    redis_client.delete(f"session-owner:{session_id}")


def test_a_session_whose_history_exists_is_never_claimed_by_someone_else(redis_client, session_id):
    history = redis_history(ttl_seconds=15)
    assert history.claim(session_id, "alice")
    history.add_turn(session_id, "secret question", "secret answer")
    redis_client.delete(f"session-owner:{session_id}")  # the owner key gone, the history not
    assert not history.claim(session_id, "mallory")
    assert not redis_client.exists(f"session-owner:{session_id}")
    redis_client.delete(f"context:{session_id}")
    assert history.claim(session_id, "mallory")  # a session with no history is free again
    redis_client.delete(f"session-owner:{session_id}")


def test_in_process_owner_and_history_expire_together(monkeypatch):
    history = InMemoryChatHistory(MemorySettings(redis_url=None, ttl_seconds=15))
    clock = [1000.0]
    monkeypatch.setattr("erp_chatbot.memory.history.time.monotonic", lambda: clock[0])
    assert history.claim("s1", "alice")
    clock[0] += 13  # a long request
    history.add_turn("s1", "q", "a")
    clock[0] += 5  # the claim is 18 s old, the turn 5 s
    assert not history.claim("s1", "mallory") and history.claim("s1", "alice")
