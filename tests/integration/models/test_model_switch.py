"""A running app follows the registry: activate and roll back switch answers over HTTP, no request fails."""

import threading
import time

import httpx
import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.models.registry import ModelRegistry
from erp_chatbot.server.app import create_app
from erp_chatbot.server.background import running_server
from erp_chatbot.settings import ModelVersionSettings, Settings
from tests.conftest import REDIS_URL, SIGNING_KEY, build_tiny_lm

QUESTION = "How do I approve a vendor bill?"


@pytest.fixture(scope="module")
def switchable(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir):
    home = tmp_path_factory.mktemp("home")
    other = build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2-b"), seed=1)
    registry = ModelRegistry(home / "registry", home / "backups", ModelVersionSettings(min_free_disk_gb=0))
    registry.import_folder(tiny_lm_dir, note="seed 0")
    registry.import_folder(other, note="seed 1")
    settings = Settings(
        home=home,
        llm={"max_new_tokens": 8, "temperature": 0},
        embeddings={"model_path": e5_dir},
        knowledge={"index_dir": sample_index_dir, "signing_key": SIGNING_KEY},
        memory={"redis_url": REDIS_URL},
        cache={"enabled": True, "redis_prefix": f"test-switch:{time.time_ns()}:"},
    )
    bot = ERPChatbot.from_settings(settings)
    with running_server(create_app(bot)) as url:
        yield url, registry, bot
    bot.cache.backend.clear()


def ask(url: str, n: int, question: str = QUESTION) -> httpx.Response:
    body = {"input": {"question": question}, "config": {"configurable": {"session_id": f"switch-{n}"}}}
    return httpx.post(f"{url}/erp/invoke", json=body, timeout=60)


def wait_for_version(url: str, version: str, load) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/health").json()["model_version"] != version:
        assert time.monotonic() < deadline, f"the app never switched to {version}"
        load()
        time.sleep(0.1)


def test_activate_and_rollback_switch_the_answers_of_a_running_app(switchable):
    url, registry, bot = switchable
    assert bot.model_dir.name == "v1"
    first = ask(url, 0).json()["output"]["answer"]
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        n = 100
        while not stop.is_set():
            # another question: the traffic must not cache the new model's answer to QUESTION
            # before the test asks it (a cache hit of the new answer would be right, but not the test)
            statuses.append(ask(url, n, f"{QUESTION} (traffic)").status_code)
            n += 1

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for worker in workers:
        worker.start()
    registry.activate("v2")
    wait_for_version(url, "v2", lambda: None)
    second = ask(url, 1).json()["output"]
    registry.rollback()
    wait_for_version(url, "v1", lambda: None)
    third = ask(url, 2).json()["output"]
    stop.set()
    for worker in workers:
        worker.join()
    assert second["answer"] != first and not second["cached"]  # a new model never gets old answers
    assert third["answer"] == first
    assert statuses and set(statuses) == {200}
