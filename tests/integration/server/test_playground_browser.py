"""The pages of the running app, driven in headless Chromium (Debian's, through Playwright): in the
LangServe playground, a Korean question typed into the form, its answer streamed onto the page with
its sources, and a follow-up in the same session that uses the history; in the chat view
(``/chat/``), a Korean conversation rendered as Markdown with its sources.

The bundled 0.5B Qwen (llama.cpp) answers, so the page shows a real Korean answer. A screenshot of
the answered page is kept in ``test-artifacts/`` (``ERP_TEST_ARTIFACTS`` to put it elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.chains.respond import merge_chunks
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from tests.conftest import REPO, tiny_settings

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright comes with the dev extra")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.demo_llm,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is needed (scripts/test.sh installs it)"),
]
ARTIFACTS = Path(os.environ.get("ERP_TEST_ARTIFACTS", REPO / "test-artifacts"))
QUESTION = "공급업체 청구서는 어떻게 승인하나요?"
FOLLOW_UP = "그럼 반려는 누가 하나요?"


@pytest.fixture(scope="module")
def base_url(models_dir, tmp_path_factory, e5_dir, sample_index_dir):
    from erp_chatbot.models.demo import demo_gguf_path

    gguf = demo_gguf_path(models_dir, "qwen2.5-coder-0.5b")
    settings = tiny_settings(
        tmp_path_factory.mktemp("home"),
        gguf,
        e5_dir,
        sample_index_dir,
        llm={"backend": "llama-cpp", "max_new_tokens": 80},
    )
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        yield url


@pytest.fixture
def page(base_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="ko-KR")
        page.goto(f"{base_url}/erp/playground/")
        yield page
        browser.close()


def ask(page, question: str) -> dict:
    """Type ``question`` into the form, start, wait for the streamed output to end; its chunks merged."""
    field = page.locator("textarea[id='#/properties/question-input']")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(question)
    page.get_by_role("button", name="Start").click()
    output = page.locator("h2:text-is('Output') + div")
    sync_api.expect(output).to_contain_text(json.dumps(question, ensure_ascii=False), timeout=60_000)  # this run's
    # the chain's last chunk is the grounding verdict: the answer has fully streamed by then
    sync_api.expect(output).to_contain_text('"grounding"', timeout=120_000)
    chunks = json_objects(output.inner_text())
    assert len(chunks) >= 3, "the sources, the answer and the grounding should arrive as chunks of a stream"
    merged: dict = {}
    for chunk in chunks:
        merged = merge_chunks(merged, chunk)
    return merged


def json_objects(text: str) -> list[dict]:
    """The playground prints each streamed chunk as JSON, one after another."""
    decoder, objects, position = json.JSONDecoder(), [], 0
    while (start := text.find("{", position)) != -1:
        value, position = decoder.raw_decode(text, start)
        objects.append(value)
    return objects


def test_a_korean_question_is_answered_with_sources_and_a_follow_up_uses_the_history(page, redis_client):
    session_id = f"browser-{os.getpid()}"
    redis_client.delete(f"context:{session_id}", f"session-owner:{session_id}")
    field = page.locator("textarea[id='#/properties/session_id-input']")
    field.click()
    page.keyboard.type(session_id)
    page.wait_for_load_state("networkidle")
    if field.input_value() != session_id:  # the form re-renders once a config is typed; a busy CPU can drop keys
        field.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(session_id)
    sync_api.expect(field).to_have_value(session_id)

    first = ask(page, QUESTION)
    assert first["language"] == "ko" and first["question"] == QUESTION
    assert first["sources"][0]["source"] == "purchasing/vendor-bill-approval.ko.md"
    assert sum("\uac00" <= ch <= "\ud7a3" for ch in first["answer"]) >= 10, "a Korean answer"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "playground-korean-answer.png", full_page=True)

    second = ask(page, FOLLOW_UP)
    assert second["question"] == FOLLOW_UP
    assert second["standalone_question"] != FOLLOW_UP and "청구서" in second["standalone_question"]
    assert redis_client.llen(f"context:{session_id}") == 4
    redis_client.delete(f"context:{session_id}", f"session-owner:{session_id}")


def chat_turn(page, question: str, answers: int) -> dict:
    """Send ``question`` in the chat view and wait until the ``answers``-th answer is complete; that
    answer's rendered parts."""
    box = page.locator("#question")
    box.click()
    page.keyboard.insert_text(question)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('.assistant[data-done]').length >= {answers}", timeout=180_000)
    turn = page.locator(".assistant").nth(answers - 1)
    assert turn.get_attribute("data-done") == "true", turn.inner_text()
    return {
        "answer": turn.locator(".answer").inner_text(),
        "markup": turn.locator(".answer").inner_html(),
        "sources": turn.locator(".sources li").all_inner_texts(),
    }


def test_the_chat_view_shows_a_korean_conversation_rendered_with_sources(base_url, redis_client):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1200}, locale="ko-KR")
        page.goto(f"{base_url}/chat/")
        first = chat_turn(page, QUESTION, answers=1)
        assert sum("\uac00" <= ch <= "\ud7a3" for ch in first["answer"]) >= 10, "a Korean answer"
        assert "**" not in first["answer"] and ("<strong>" in first["markup"] or "<em>" in first["markup"])
        assert "<li>" in first["markup"], "the section's steps as a rendered list"
        assert any("purchasing/vendor-bill-approval.ko.md" in source for source in first["sources"])
        second = chat_turn(page, FOLLOW_UP, answers=2)
        assert second["sources"] and page.locator(".user").all_inner_texts() == [QUESTION, FOLLOW_UP]
        session = page.evaluate("sessionId")
        assert redis_client.llen(f"context:{session}") == 4, "both turns in the page's one session"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "chat-korean-conversation.png", full_page=True)
        redis_client.delete(f"context:{session}", f"session-owner:{session}")
        browser.close()


HOSTILE = "1. **Approve** `Bills`\n2. <img src=x onerror=alert(1)> [x](javascript:alert(1))\n\n- one\n- two"


def test_the_chat_views_markdown_renders_steps_and_escapes_html(base_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base_url}/chat/")
        html = page.evaluate("(text) => renderMarkdown(text)", HOSTILE)
        browser.close()
    assert '<ol start="1">' in html and "<li><strong>Approve</strong> <code>Bills</code></li>" in html
    assert "<ul>" in html and "<li>two</li>" in html
    assert "<img" not in html and "&lt;img" in html and 'href="javascript' not in html
