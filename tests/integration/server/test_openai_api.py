"""``/v1/chat/completions`` driven by the official ``openai`` client against the running app
(uvicorn on loopback, tiny model, real e5, FAISS and Redis), streaming and not."""

import json

import httpx
import openai
import pytest
from langchain_core.messages import messages_from_dict

from erp_chatbot import ERPChatbot
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from tests.conftest import tiny_settings


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir):
    settings = tiny_settings(tmp_path_factory.mktemp("home"), tiny_lm_dir, e5_dir, sample_index_dir)
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        yield url


@pytest.fixture
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-on-loopback", max_retries=0, timeout=60)


def test_models_lists_the_chain(client):
    assert [m.id for m in client.models.list()] == ["erp-chatbot"]


def test_completion_answers_and_remembers_the_session(client, session_id, redis_client):
    question = "재고 이동은 어디서 확인하나요?"
    reply = client.chat.completions.create(
        model="erp-chatbot", messages=[{"role": "user", "content": question}], user=session_id
    )
    answer = reply.choices[0].message.content
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop" and answer
    extras = reply.model_extra["erp"]
    assert extras["sources"][0]["source"] == "inventory/stock-moves.ko.md" and extras["language"] == "ko"
    raw = redis_client.lrange(f"context:{session_id}", 0, -1)
    stored = messages_from_dict([json.loads(item) for item in reversed(raw)])
    assert [(m.type, m.content) for m in stored] == [("human", question), ("ai", answer)]


def test_stream_delivers_the_same_kind_of_answer_in_chunks(client, session_id):
    stream = client.chat.completions.create(
        model="erp-chatbot",
        messages=[
            {"role": "system", "content": "ignored: the deployment's prompts apply"},
            {"role": "user", "content": [{"type": "text", "text": "How do I approve a vendor bill?"}]},
        ],
        user=session_id,
        stream=True,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces and chunks[0].choices[0].delta.role == "assistant"  # (pieces: chains.line_gate.LineGate)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["erp"]["sources"][0]["source"] == "purchasing/vendor-bill-approval.en.md"
    assert len({c.id for c in chunks}) == 1


def test_bad_requests_are_refused_with_a_reason(client, base_url):
    with pytest.raises(openai.UnprocessableEntityError, match="no user message"):
        client.chat.completions.create(model="erp-chatbot", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="empty"):
        client.chat.completions.create(model="erp-chatbot", messages=[{"role": "user", "content": "  "}])
    owned = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "user": "bad id with spaces"},
        timeout=30,
    )
    assert owned.status_code == 422 and "session_id" in owned.text
