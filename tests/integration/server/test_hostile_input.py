"""Hostile input over real HTTP: every bad request gets a clear 4xx and writes nothing.

Then schemathesis fuzzes every operation in the app's OpenAPI schema: no 5xx, and every response
matches the schema.
"""

import json
import uuid

import httpx
import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from tests.conftest import tiny_settings

PREFIX = f"test-hostile-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def bot(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir, redis_client):
    settings = tiny_settings(
        tmp_path_factory.mktemp("home"),
        tiny_lm_dir,
        e5_dir,
        sample_index_dir,
        memory={"key_prefix": PREFIX, "owner_prefix": f"{PREFIX}owner:"},
        server={"max_question_chars": 100, "max_body_bytes": 4096},
    )
    yield ERPChatbot.from_settings(settings)
    for key in redis_client.scan_iter(f"{PREFIX}*"):
        redis_client.delete(key)


@pytest.fixture(scope="module")
def base_url(bot):
    with running_server(create_app(bot)) as url:
        yield url


@pytest.fixture(scope="module")
def roomy_url(bot):
    """The same app with the default body limit, for bodies larger than 4 KB."""
    server = bot.settings.server.model_copy(update={"max_body_bytes": 256 * 1024})
    with running_server(create_app(bot, bot.settings.model_copy(update={"server": server}))) as url:
        yield url


def payload(question: object, session_id: str) -> dict:
    return {"input": {"question": question}, "config": {"configurable": {"session_id": session_id}}}


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("재" * 101, "at most 100 characters"),
        ("stock\x00moves", "U+0000"),
        ("bill\x1b]0;title\x07", "U+001B"),
        (12345, "valid string"),
    ],
)
def test_bad_questions_get_422_with_the_reason_and_write_nothing(base_url, redis_client, question, message):
    session = f"s-{uuid.uuid4().hex}"
    response = httpx.post(f"{base_url}/erp/invoke", json=payload(question, session), timeout=60)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert not redis_client.exists(f"{PREFIX}{session}")


def test_a_bad_question_in_a_batch_refuses_the_batch(base_url):
    body = {"inputs": [{"question": "재고 이동?"}, {"question": " "}], "config": {"configurable": {"session_id": "b1"}}}
    response = httpx.post(f"{base_url}/erp/batch", json=body, timeout=60)
    assert response.status_code == 422 and "empty" in response.text


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b'{"input": {"question": "\xff\xfe bill"}}', 400, "not valid UTF-8"),
        (b'{"input": {"question": "bill"', 400, "not valid JSON"),
        (b"[not json", 400, "not valid JSON"),
        (json.dumps(payload("x" * 5000, "big")).encode(), 413, "4096-byte limit"),
    ],
)
def test_broken_bodies_get_a_4xx_with_the_reason(base_url, content, status, message):
    response = httpx.post(
        f"{base_url}/erp/invoke", content=content, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == status and message in response.json()["detail"]


def test_an_oversized_chunked_body_is_refused_too(base_url):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = httpx.post(f"{base_url}/erp/invoke", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_schemathesis_finds_no_server_error_and_no_schema_violation(base_url):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    cases: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call(base_url=base_url, timeout=60)
            cases.append(f"{case.method} {case.path} -> {response.status_code}")
            case.validate_response(
                response, checks=[schemathesis.checks.not_a_server_error, response_schema_conformance]
            )

        fuzz()
    assert len(cases) > 50 and any(c.startswith("POST /erp/invoke") for c in cases)


DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json", "/nowhere", "/erp/invoke", "/feedback"])
def test_a_deeply_nested_body_gets_400_anywhere(roomy_url, path):
    # #31: Python's JSON parser ran out of stack on it: 500 with a 40-line traceback, even without a key.
    response = httpx.post(f"{roomy_url}{path}", content=DEEP, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/erp/stream", "/erp/batch"])
def test_a_deeply_nested_body_sent_as_plain_text_gets_400_too(roomy_url, path):
    response = httpx.post(f"{roomy_url}{path}", content=DEEP, headers={"content-type": "text/plain"})
    assert response.status_code == 400 and "nested" in response.json()["detail"]


@pytest.mark.parametrize(
    ("raw_question", "reason"),
    [(b"NaN", "NaN"), (b'"\\ud800"', "surrogate"), (b"1" * 5000, "digits")],
    ids=["nan", "lone-surrogate", "5000-digits"],
)
@pytest.mark.parametrize("path", ["/erp/invoke", "/feedback"])
def test_json_that_python_reads_but_is_not_json_gets_400(roomy_url, raw_question, reason, path):
    if path == "/feedback":
        body = b'{"run_id": ' + raw_question + b', "vote": "up"}'
    else:
        body = b'{"input": {"question": ' + raw_question + b'}, "config": {"configurable": {"session_id": "n1"}}}'
    response = httpx.post(f"{roomy_url}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and reason in response.json()["detail"], response.text


def test_an_openai_text_part_that_is_not_text_gets_422(base_url):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 422, response.text
