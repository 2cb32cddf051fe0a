"""The `erp-chatbot` command on the tiny model and real e5: in a process of its own where the process
is what is checked, else in the test's (``commands``)."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from erp_chatbot.cli import load_settings
from tests.conftest import REDIS_URL, SAMPLE_KNOWLEDGE
from tests.integration.cli.commands import invoke, run

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("ingest", "ask", "chat", "serve", "train", "settings", "models", "keys", "eval"):
        assert command in result.stdout
    groups = {"models": ("list", "import", "activate", "rollback"), "eval": ("retrieval", "answers")}
    for group, commands in groups.items():
        listed = run(group, "--help")
        assert listed.returncode == 0 and all(command in listed.stdout for command in commands), group


def test_models_import_reports_progress_and_json(tmp_path, tiny_lm_dir):
    config = tmp_path / "erp.yaml"
    config.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "model_versions": {"min_free_disk_gb": 0}}))
    imported = run("models", "import", str(tiny_lm_dir), "--note", "tiny", "--config", str(config), "--json")
    assert imported.returncode == 0, imported.stderr
    assert "copying" in imported.stderr  # the step is announced on stderr, stdout stays JSON
    version = json.loads(imported.stdout)
    assert version["note"] == "tiny" and "config.json" in version["files"]
    state = json.loads(run("models", "list", "--config", str(config), "--json").stdout)
    assert state["active"] == version["id"]


def tiny_config(tmp_path, tiny_lm_dir, e5_dir):
    """A settings file for the tiny model, real e5 and Redis, with its own home and index."""
    config = tmp_path / "erp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "llm": {"model_path": str(tiny_lm_dir), "max_new_tokens": 8, "temperature": 0},
                "embeddings": {"model_path": str(e5_dir)},
                "knowledge": {"index_dir": str(tmp_path / "index")},
                "memory": {"redis_url": REDIS_URL},
            }
        )
    )
    return config


def test_ingest_then_ask(tmp_path, tiny_lm_dir, e5_dir, session_id):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "hr", docs)
    config = tiny_config(tmp_path, tiny_lm_dir, e5_dir)
    ingested = run("ingest", str(docs), "--config", str(config), "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert "DEBUG" not in ingested.stderr  # bm25s sets its own logger to DEBUG; the default level is WARNING
    report = json.loads(ingested.stdout)
    assert len(report["added"]) == 4 and report["chunks_total"] > 0

    again = json.loads(invoke("ingest", str(docs), "--config", str(config), "--json").stdout)
    assert again["added"] == [] and again["unchanged"] == 4

    question = "경비 보고서는 언제까지 제출하나요?"
    asked = invoke("ask", question, "--config", str(config), "--session", session_id, "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["sources"][0]["source"] == "expense-claims.ko.md" and answer["session_id"] == session_id

    streamed = invoke("ask", question, "--config", str(config))
    assert streamed.returncode == 0, streamed.stderr
    text, _, sources = streamed.stdout.partition("\n  - ")
    assert text.strip() and sources.startswith("경비") and "expense-claims.ko.md" in sources


def test_chat_keeps_one_session(tmp_path, tiny_lm_dir, e5_dir, session_id, redis_client):
    """Two questions typed into ``chat`` are two turns of one session, each answered with its sources."""
    config = tiny_config(tmp_path, tiny_lm_dir, e5_dir)
    assert invoke("ingest", str(SAMPLE_KNOWLEDGE / "hr"), "--config", str(config), "--json").returncode == 0
    questions = "경비 보고서는 언제까지 제출하나요?\n그럼 누가 승인해?\n"
    chatted = invoke("chat", "--config", str(config), "--session", session_id, stdin=questions)
    assert chatted.returncode == 0, chatted.stderr
    assert chatted.stdout.count("\n  - ") >= 2 and session_id in chatted.stderr
    history = redis_client.lrange(f"context:{session_id}", 0, -1)
    assert len(history) == 4  # two questions, two answers


def test_errors_are_one_clear_line(tmp_path):
    result = run("ingest", str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr
    result = run("ask", "hello?", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and result.stderr.strip().startswith("error:")
    assert "nope.yaml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_demo_uses_its_own_index_and_survives_a_missing_redis(monkeypatch, tmp_path):
    monkeypatch.setenv("ERP_HOME", str(tmp_path))
    monkeypatch.setenv("ERP_MEMORY__REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    settings = load_settings(None, demo=True)
    assert settings.index_dir == tmp_path / "demo-index"
    assert settings.memory.redis_url is None
    assert (settings.llm.backend, settings.llm.demo_model, settings.llm.max_new_tokens) == (  # the demo profile
        "llama-cpp",
        "qwen2.5-coder-1.5b",
        256,
    )
    assert settings.retrieval.translate_queries and settings.llm.prompt_document_tokens == 400


def test_keys_add_list_revoke(tmp_path):
    import os

    from erp_chatbot.server.auth import APIKeys

    keys_file = tmp_path / "keys.yaml"
    env = {**os.environ, "ERP_ACCESS__API_KEYS_FILE": str(keys_file)}
    added = run("keys", "add", "--user", "alice", "--roles", "finance, hr", env=env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("erp_") and key not in keys_file.read_text()
    assert APIKeys(keys_file).authenticate(key).roles == ("finance", "hr")
    listed = run("keys", "list", "--json", env=env)
    assert json.loads(listed.stdout) == [{"user": "alice", "roles": ["finance", "hr"]}]
    assert "1 key(s) removed" in run("keys", "revoke", "--user", "alice", env=env).stdout
    assert APIKeys(keys_file).authenticate(key) is None
    unset = run("keys", "list", env={k: v for k, v in os.environ.items() if not k.startswith("ERP_ACCESS")})
    assert unset.returncode != 0 and "access.api_keys_file" in unset.stderr


def test_serve_demo_says_what_it_does_and_when_it_is_ready(tmp_path):
    """A first start in a fresh home: steps announced, then one ``ready`` line with the chat URL;
    no DEBUG lines and no progress bars for sub-second steps at the default level."""
    import os
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "ERP_HOME": str(tmp_path), "ERP_MEMORY__REDIS_URL": REDIS_URL}
    command = [sys.executable, "-c", "from erp_chatbot.cli import main; main()", "serve", "--demo", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not any(line.startswith("ready:") for line in lines):
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        server.terminate()
        server.wait(timeout=30)
    output = "".join(lines)
    assert (
        f"ready: chat at http://127.0.0.1:{port}/chat/ (prompt playground: http://127.0.0.1:{port}/erp/playground/)"
        in output
    ), output
    assert "indexing the bundled sample knowledge" in output and "loading the models" in output
    assert "DEBUG" not in output and "Loading weights" not in output, output
