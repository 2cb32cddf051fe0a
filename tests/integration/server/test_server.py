"""The LangServe app over real HTTP (uvicorn on loopback), tiny model, real e5, FAISS and Redis."""

import json

import httpx
import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from tests.conftest import tiny_settings


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir):
    # a question limit above the tiny model's 4096 positions, so test_metrics can make generation fail
    settings = tiny_settings(
        tmp_path_factory.mktemp("home"), tiny_lm_dir, e5_dir, sample_index_dir, server={"max_question_chars": 40_000}
    )
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        yield url


def body(question: str, session_id: str | None = None) -> dict:
    payload: dict = {"input": {"question": question}}
    if session_id is not None:
        payload["config"] = {"configurable": {"session_id": session_id}}
    return payload


def test_health(base_url):
    health = httpx.get(f"{base_url}/health").json()
    assert health["status"] == "ok" and health["memory"]["ok"] and health["index"]["chunks"] > 0


def test_invoke_answers_with_sources(base_url, session_id):
    response = httpx.post(f"{base_url}/erp/invoke", json=body("재고 이동은 어디서 확인하나요?", session_id), timeout=60)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["sources"][0]["source"] == "inventory/stock-moves.ko.md" and output["answer"]


@pytest.mark.parametrize("session_id", [None, "", "no spaces allowed", "x" * 500])
def test_missing_or_invalid_session_is_a_422(base_url, session_id):
    response = httpx.post(f"{base_url}/erp/invoke", json=body("How do I count stock?", session_id), timeout=30)
    assert response.status_code == 422 and "session_id" in response.text
    stream = httpx.post(f"{base_url}/erp/stream", json=body("How do I count stock?", session_id), timeout=30)
    assert stream.status_code == 422


def test_empty_question_is_a_422(base_url, session_id):
    response = httpx.post(f"{base_url}/erp/invoke", json=body("", session_id), timeout=30)
    assert response.status_code == 422


def test_stream_sends_the_answer_in_chunks(base_url, session_id, redis_client):
    with httpx.stream(
        "POST", f"{base_url}/erp/stream", json=body("How do I approve a vendor bill?", session_id), timeout=60
    ) as response:
        assert response.status_code == 200
        events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events if e.startswith("{") and "run_id" not in e]
    answer_chunks = [c["answer"] for c in chunks if "answer" in c]
    # the random model writes one line without a sentence end: it comes once checked, then any note
    # (sentence-by-sentence streaming: tests/unit/chains/test_rag.py)
    assert answer_chunks and all(answer_chunks) and "grounding" in chunks[-1]
    assert chunks[0]["sources"][0]["source"] == "purchasing/vendor-bill-approval.en.md"
    assert redis_client.llen(f"context:{session_id}") == 2


def test_remote_runnable_keeps_the_conversation(base_url, session_id):
    from langserve import RemoteRunnable

    remote = RemoteRunnable(f"{base_url}/erp/")
    cfg = {"configurable": {"session_id": session_id}}
    remote.invoke({"question": "공급업체 청구서는 어떻게 승인하나요?"}, cfg)
    follow_up = remote.invoke({"question": "그럼 승인은 누가 해?"}, cfg)
    assert "청구서" in follow_up["standalone_question"]
    streamed = list(remote.stream({"question": "반려는 어떻게 하나요?"}, cfg))
    assert len(streamed) >= 3 and streamed[0]["sources"] and "grounding" in streamed[-1]  # sources, answer, verdict


async def test_remote_runnable_batches_and_streams_events(base_url, redis_client):
    from langserve import RemoteRunnable

    remote = RemoteRunnable(f"{base_url}/erp/")
    sessions = [f"test-remote-{n}" for n in range(2)]
    try:
        outputs = remote.batch(
            [{"question": "How do I approve a vendor bill?"}, {"question": "재고 이동은 어디서 확인하나요?"}],
            [{"configurable": {"session_id": s}} for s in sessions],
        )
        assert [o["sources"][0]["source"] for o in outputs] == [
            "purchasing/vendor-bill-approval.en.md",
            "inventory/stock-moves.ko.md",
        ]
        assert [redis_client.llen(f"context:{s}") for s in sessions] == [2, 2]
        events = [
            event
            async for event in remote.astream_events(
                {"question": "And who approves it?"}, {"configurable": {"session_id": sessions[0]}}, version="v2"
            )
        ]
        kinds = {event["event"] for event in events}
        assert {"on_chain_start", "on_chain_stream", "on_chain_end"} <= kinds
        final = next(e for e in reversed(events) if e["event"] == "on_chain_end")["data"]["output"]
        assert "bill" in final["standalone_question"].lower() and final["grounding"] is not None
    finally:
        redis_client.delete(*(f"context:{s}" for s in sessions), *(f"session-owner:{s}" for s in sessions))


def test_playground_and_schemas_are_served(base_url):
    assert httpx.get(f"{base_url}/erp/playground/index.html").status_code == 200
    schema = httpx.get(f"{base_url}/erp/config_schema").json()
    assert "session_id" in json.dumps(schema)
    assert httpx.get(f"{base_url}/erp/input_schema").json()["required"] == ["question"]


def chat(messages: list[tuple[str, str]]) -> dict:
    return {"input": {"messages": [{"type": kind, "content": text} for kind, text in messages]}}


def test_chat_answers_a_conversation_with_its_sources(base_url, redis_client):
    """The chat view's route: the conversation in (no config: the page sends none), the answer
    then its sources; the earlier turns become the new session's history."""
    question = "재고 이동은 어디서 확인하나요?"
    first = httpx.post(f"{base_url}/erp/chat/invoke", json=chat([("human", question)]), timeout=60)
    assert first.status_code == 200, first.text
    answer, _, sources = first.json()["output"].partition("\n\n---\n")
    assert answer.strip() and sources.startswith("출처:") and "(inventory/stock-moves.ko.md)" in sources

    conversation = [("human", question), ("ai", first.json()["output"]), ("human", "그럼 취소는?")]
    before = set(redis_client.scan_iter("context:chat-*"))
    follow_up = httpx.post(f"{base_url}/erp/chat/invoke", json=chat(conversation), timeout=60)
    assert follow_up.status_code == 200, follow_up.text
    (session,) = set(redis_client.scan_iter("context:chat-*")) - before  # one new session
    stored = redis_client.lrange(session, 0, -1)  # newest first: the new turn, then the seeded one
    assert len(stored) == 4 and "그럼 취소는?".encode() in stored[1] and question.encode() in stored[3]
    assert not any(b"\n\n---\n" in item for item in stored)  # seeded without its sources
    redis_client.delete(session)


@pytest.mark.parametrize(
    "payload",
    [
        chat([]),
        chat([("human", "How do I count stock?"), ("ai", "Like this.")]),
        chat([("human", "   ")]),
        chat([("robot", "How do I count stock?")]),
        {"input": {"messages": "How do I count stock?"}},
    ],
)
def test_chat_refuses_what_is_not_a_conversation_ending_with_a_question(base_url, payload, redis_client):
    before = set(redis_client.scan_iter("session-owner:chat-*"))
    response = httpx.post(f"{base_url}/erp/chat/invoke", json=payload, timeout=30)
    assert response.status_code == 422, response.text
    assert set(redis_client.scan_iter("session-owner:chat-*")) == before  # a refused request claims nothing


def test_root_links_the_chat_view_and_the_playgrounds(base_url):
    page = httpx.get(f"{base_url}/").text
    assert 'href="/chat/"' in page and 'href="/erp/chat/playground/"' in page and 'href="/erp/playground/"' in page
    assert httpx.get(f"{base_url}/erp/chat/playground/index.html").status_code == 200


def test_the_chat_view_is_a_page_of_ours_that_asks_the_chain_it_is_served_with(base_url):
    page = httpx.get(f"{base_url}/chat/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<meta name="erp-path" content="/erp">' in page.text and '<script src="chat.js">' in page.text
    assert "://" not in page.text.replace('href="../"', ""), "nothing is fetched from elsewhere"
    script = httpx.get(f"{base_url}/chat/chat.js")
    assert script.headers["content-type"].startswith("text/javascript") and "${chainPath}/stream" in script.text
