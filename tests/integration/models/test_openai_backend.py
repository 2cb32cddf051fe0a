"""``llm.backend: openai`` against a real OpenAI-compatible server: llama-cpp-python's own server
(a separate process, as vLLM or TGI would be) serving the bundled 0.5B GGUF on this CPU."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.models.openai_server import LLMServerUnavailable, served_models
from erp_chatbot.settings import LLMSettings
from tests.conftest import tiny_settings

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] comes with the dev extra")
pytest.importorskip("langchain_openai", reason="langchain-openai comes with the openai extra")

ALIAS = "qwen-demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(models_dir):
    from erp_chatbot.models.demo import demo_gguf_path

    port = free_port()
    gguf = demo_gguf_path(models_dir, "qwen2.5-coder-0.5b")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--verbose", "False"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not answer within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def chatbot(server_url, tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir) -> ERPChatbot:
    settings = tiny_settings(
        tmp_path_factory.mktemp("home"),
        tiny_lm_dir,
        e5_dir,
        sample_index_dir,
        # served_model unset: the name is asked of the server
        llm={"backend": "openai", "base_url": server_url, "model_path": None, "max_new_tokens": 60},
    )
    return ERPChatbot.from_settings(settings)


def test_the_served_model_answers_through_the_same_chain(chatbot, session_id):
    answer = chatbot.ask("How do I approve a vendor bill?", session_id)
    assert chatbot.model_version == ALIAS
    assert answer.sources[0].source == "purchasing/vendor-bill-approval.en.md"
    assert answer.language == "en" and len(answer.text.split()) >= 5
    assert answer.timings["first_token"] < answer.timings["total"]


def test_the_token_cap_reaches_the_server(chatbot):
    """Self-hosted servers (llama.cpp's, TGI, older vLLM) read ``max_tokens``; LangChain's client sends
    OpenAI's newer ``max_completion_tokens``, which they ignore: every answer and rewrite then ran to
    the end of the context (this module's follow-up test took ten minutes)."""
    from erp_chatbot.models.llm import greedy_capped

    reply = greedy_capped(chatbot.llm, 5).invoke("Count from 1 to 300, one number per line.")
    assert reply.usage_metadata["output_tokens"] <= 5, reply.content[:200]
    answer = chatbot.llm.invoke("Count from 1 to 300, one number per line.")
    assert answer.usage_metadata["output_tokens"] <= 60  # llm.max_new_tokens


def test_streaming_and_follow_ups_use_the_server(chatbot, session_id):
    chatbot.ask("공급업체 청구서는 어떻게 승인하나요?", session_id)
    pieces = list(chatbot.stream("그럼 반려는 어떻게 해?", session_id))
    assert len(pieces) > 3
    turns = chatbot.history.messages(session_id)
    assert len(turns) == 4 and turns[-1].content == "".join(pieces)


def test_an_unreachable_server_is_named_in_the_error():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMServerUnavailable, match=dead.replace(".", r"\.")):
        served_models(LLMSettings(backend="openai", base_url=dead))
