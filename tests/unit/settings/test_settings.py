from pathlib import Path

import pytest
from pydantic import ValidationError

from erp_chatbot.settings import Settings


def test_defaults_are_the_designs():
    s = Settings()
    assert (s.llm.temperature, s.llm.max_new_tokens, s.llm.load_in_8bit) == (0.7, 2048, True)
    assert s.resources.llm.gpu_ids == [0, 1]
    assert s.resources.vector_search.gpu_ids == [2]
    assert s.resources.training.gpu_ids == [2]
    assert (s.retrieval.k, s.retrieval.score_threshold) == (5, 0.7)
    assert (s.memory.key_prefix, s.memory.ttl_seconds, s.memory.window_turns) == ("context:", 1800, 10)
    assert (s.cache.max_entries, s.cache.ttl_seconds) == (10_000, 3600)
    assert (s.batching.batch_size, s.batching.max_concurrency) == (16, 4)
    assert (s.model_versions.max_versions, s.model_versions.keep_backups) == (3, 2)
    assert s.model_versions.min_free_disk_gb == 500


def test_yaml_then_environment_then_arguments(tmp_path: Path, monkeypatch):
    config = tmp_path / "erp.yaml"
    config.write_text("llm:\n  temperature: 0.2\nretrieval:\n  k: 3\n  score_threshold: 0.5\n")
    s = Settings.from_yaml(config)
    assert (s.llm.temperature, s.retrieval.k, s.retrieval.score_threshold) == (0.2, 3, 0.5)
    monkeypatch.setenv("ERP_RETRIEVAL__K", "8")
    s = Settings.from_yaml(config)
    assert (s.retrieval.k, s.retrieval.score_threshold) == (8, 0.5)
    assert Settings.from_yaml(config, llm={"temperature": 0.9}).llm.temperature == 0.9


def test_erp_config_variable_names_the_yaml(tmp_path: Path, monkeypatch):
    config = tmp_path / "erp.yaml"
    config.write_text("memory:\n  window_turns: 4\n")
    monkeypatch.setenv("ERP_CONFIG", str(config))
    assert Settings().memory.window_turns == 4


def test_missing_yaml_says_which_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        Settings.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "bad",
    [
        {"retrieval": {"k": 0}},
        {"retrieval": {"score_threshold": 1.5}},
        {"retrieval": {"coverage_question": "everything"}},
        {"retrieval": {"coverage_question": "manual"}},  # no check to ask it: a no-op is refused
        {"knowledge": {"chunk_size": 200, "chunk_overlap": 200}},
        {"llm": {"temprature": 0.5}},
    ],
)
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_the_openai_backend_needs_a_server_and_keeps_its_key_secret(monkeypatch):
    with pytest.raises(ValidationError, match=r"llm\.base_url"):
        Settings(llm={"backend": "openai"})
    monkeypatch.setenv("ERP_LLM__API_KEY", "sk-local-123")
    s = Settings(llm={"backend": "openai", "base_url": "http://vllm:8000/v1"})
    assert s.llm.api_key.get_secret_value() == "sk-local-123" and "sk-local-123" not in repr(s)


def test_paths_derive_from_home(tmp_path: Path):
    s = Settings(home=tmp_path)
    assert s.models_dir == tmp_path / "models"
    assert s.index_dir == tmp_path / "index"
    assert Settings(home=tmp_path, knowledge={"index_dir": tmp_path / "x"}).index_dir == tmp_path / "x"


def test_signing_key_is_a_secret(monkeypatch):
    monkeypatch.setenv("ERP_KNOWLEDGE__SIGNING_KEY", "s3cret")
    settings = Settings()
    assert settings.knowledge.signing_secret == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()
    assert Settings(knowledge={"signing_key": None}).knowledge.signing_secret is None


def test_the_configuration_doc_table_is_the_generated_reference():
    from erp_chatbot.settings import reference, reference_markdown
    from tests.conftest import REPO

    readme = (REPO / "docs" / "configuration.md").read_text()
    start = readme.index("<!-- settings:start")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- settings:end -->")].strip()
    stale = "docs/configuration.md is stale: paste `erp-chatbot settings --markdown` between the markers"
    assert table == reference_markdown(), stale
    assert all(row["meaning"] for row in reference()), "every setting needs a description"
    names = {row["setting"] for row in reference()}
    assert {"llm.backend", "retrieval.k", "memory.ttl_seconds", "cache.max_entries"} <= names


def test_the_odoo_bench_config_is_the_demo_profile_over_a_manual(monkeypatch):
    """Benchmarks on the Odoo manual measure what the demo ships, but for a manual's coverage question."""
    for name in ("ERP_CONFIG", "ERP_RETRIEVAL__COVERAGE_QUESTION"):
        monkeypatch.delenv(name, raising=False)
    repo = Path(__file__).resolve().parents[3]
    demo = Settings.from_yaml(repo / "erp_chatbot" / "profiles" / "demo.yaml")
    odoo = Settings.from_yaml(repo / "bench" / "odoo.yaml")
    assert odoo.llm == demo.llm
    assert demo.retrieval.coverage_question == "documents"
    assert odoo.retrieval == demo.retrieval.model_copy(update={"coverage_question": "manual"})
    assert odoo.answer.mode == demo.answer.mode and odoo.answer.decline_below.keys() == demo.answer.decline_below.keys()
    assert odoo.index_dir.name == "odoo-index"
