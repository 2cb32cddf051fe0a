"""Faults: a Redis of our own stopped, frozen and restarted under the running app; slow requests cut
off by the deadline; ingestion killed with SIGKILL; many turns at once on one session."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest
import redis

from erp_chatbot import ERPChatbot
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from tests.conftest import REPO, SAMPLE_KNOWLEDGE, ingest_folder, tiny_settings

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)


class OwnRedis:
    """A redis-server on a free port that a test may kill, freeze and restart."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    server = OwnRedis()
    server.start()
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.kill()


def ask(url: str, session: str, question: str = "재고 이동은 어디서 확인하나요?") -> httpx.Response:
    body = {"input": {"question": question}, "config": {"configurable": {"session_id": session}}}
    return httpx.post(f"{url}/erp/invoke", json=body, timeout=60)


def test_answers_go_on_while_redis_is_down_and_history_returns_with_it(
    own_redis, tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, caplog
):
    settings = tiny_settings(
        tmp_path,
        tiny_lm_dir,
        e5_dir,
        sample_index_dir,
        memory={"redis_url": own_redis.url, "socket_timeout_seconds": 0.5},
        cache={"enabled": True},
    )
    store = redis.Redis.from_url(own_redis.url)
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        assert ask(url, "before").status_code == 200
        assert store.llen("context:before") == 2 and httpx.get(f"{url}/health").json()["status"] == "ok"

        own_redis.kill()
        start = time.monotonic()
        down = ask(url, "during")
        assert down.status_code == 200 and down.json()["output"]["answer"], down.text
        assert time.monotonic() - start < 10
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded" and not health["memory"]["ok"]
        assert "Redis is unavailable" in caplog.text

        own_redis.start()  # empty: --save "" keeps nothing across restarts
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert ask(url, "after").status_code == 200
        assert store.llen("context:after") == 2 and "Redis is back" in caplog.text

        os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        start = time.monotonic()
        frozen = ask(url, "frozen")
        elapsed = time.monotonic() - start
        os.kill(own_redis.process.pid, signal.SIGCONT)
        assert frozen.status_code == 200 and elapsed < 15, (frozen.status_code, elapsed)


def test_a_request_over_the_deadline_gets_504(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir):
    settings = tiny_settings(
        tmp_path,
        tiny_lm_dir,
        e5_dir,
        sample_index_dir,
        llm={"max_new_tokens": 3000},
        server={"request_timeout_seconds": 0.5},
    )
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        start = time.monotonic()
        response = ask(url, f"slow-{uuid.uuid4().hex}")
        assert response.status_code == 504 and "request_timeout_seconds" in response.json()["detail"]
        assert time.monotonic() - start < 3


async def test_simultaneous_turns_on_one_session_lose_nothing(
    tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, redis_client
):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, memory={"window_turns": 100})
    bot = ERPChatbot.from_settings(settings)
    shared = f"shared-{uuid.uuid4().hex}"
    others = [f"solo-{i}-{uuid.uuid4().hex}" for i in range(8)]
    questions = [f"재고 이동 질문 {i}번은 어디서 확인하나요?" for i in range(24)]
    jobs = [bot.aask(q, session_id=shared) for q in questions]
    jobs += [bot.aask(f"{sid} 세션의 질문입니다?", session_id=sid) for sid in others]
    answers = await asyncio.gather(*jobs)
    try:
        history = bot.history.messages(shared)
        assert len(history) == 2 * len(questions)
        given = {a.standalone_question: a.text for a in answers[: len(questions)]}
        for human, ai in zip(history[::2], history[1::2], strict=True):
            assert human.type == "human" and ai.type == "ai"  # each turn stored together
            assert ai.content.strip() == given[human.content]
        assert sorted(m.content for m in history[::2]) == sorted(questions)
        for sid in others:
            assert next(m.content for m in bot.history.messages(sid)) == f"{sid} 세션의 질문입니다?"
            assert len(bot.history.messages(sid)) == 2
    finally:
        redis_client.delete(*[f"context:{s}" for s in [shared, *others]])


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from erp_chatbot.knowledge import index as index_store, ingest
    from erp_chatbot.models.embeddings import build_embeddings
    from erp_chatbot.settings import EmbeddingSettings
    from tests.conftest import ingest_folder

    docs, index_dir, e5_dir, stage, marker = sys.argv[1:]
    embeddings = build_embeddings(Path(e5_dir), EmbeddingSettings(), "cpu")

    def wait_for_the_kill(*args, **kwargs):
        Path(marker).write_text(stage)
        time.sleep(600)

    if stage == "embedding":
        ingest.embed_in_batches = wait_for_the_kill
    else:  # the new generation is on disk, the switch to it not yet made
        index_store._fsync_dir = wait_for_the_kill
    ingest_folder(Path(docs), Path(index_dir), embeddings)
    """
)


@pytest.mark.parametrize("stage", ["embedding", "saving"])
def test_sigkill_during_ingestion_leaves_the_previous_index_serving(tmp_path, e5_dir, embeddings, stage):
    docs, index_dir, marker = tmp_path / "docs", tmp_path / "index", tmp_path / "killed-at"
    shutil.copytree(SAMPLE_KNOWLEDGE / "invoicing", docs)
    ingest_folder(docs, index_dir, embeddings)
    before = index_store.read_manifest(index_dir)
    shutil.copytree(SAMPLE_KNOWLEDGE / "purchasing", docs / "purchasing")

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(docs), str(index_dir), str(e5_dir), stage, str(marker)], cwd=REPO
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline, "the ingesting child ended early"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()

    after = index_store.load(index_dir, embeddings)
    assert after.manifest == before and after.store.index.ntotal == before.chunk_count
    report = ingest_folder(docs, index_dir, embeddings)  # the next run finishes the job
    assert sorted(report.added) == sorted(p.relative_to(docs).as_posix() for p in (docs / "purchasing").iterdir())


def test_the_redis_password_never_reaches_a_log_or_an_error(tmp_path, caplog):
    # #31: with Redis down, every request logged the full memory.redis_url, password included.
    from erp_chatbot.memory.history import HistoryUnavailable, RedisChatHistory
    from erp_chatbot.settings import MemorySettings

    settings = MemorySettings(redis_url="redis://:hunter2-secret@127.0.0.1:1/0", socket_timeout_seconds=0.2)
    history = RedisChatHistory(settings)
    with pytest.raises(HistoryUnavailable) as refused:
        history.claim("s1", "alice")
    history.messages("s1")  # logged: answering without history
    assert "hunter2" not in str(refused.value) and "127.0.0.1:1" in str(refused.value)
    assert "hunter2" not in caplog.text and "Redis is unavailable" in caplog.text
    assert settings.redis_location == "redis://***@127.0.0.1:1/0"
