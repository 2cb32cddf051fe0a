"""`erp-chatbot eval retrieval` on a BEIR set, scores recorded for /metrics; demo GGUF import."""

import json

import numpy as np
import pytest
import yaml
from prometheus_client import generate_latest

from erp_chatbot.evaluation import read_scores
from erp_chatbot.knowledge.loaders import iter_files, load_file
from erp_chatbot.monitoring.gpu import GPUCollector
from erp_chatbot.monitoring.metrics import ChatMetrics
from tests.conftest import SAMPLE_KNOWLEDGE, SIGNING_KEY
from tests.integration.cli.commands import invoke, run

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)

QUERIES = {
    "q1": ("How do I approve a vendor bill?", "purchasing/vendor-bill-approval.en.md"),
    "q2": ("재고 이동은 어디서 확인하나요?", "inventory/stock-moves.ko.md"),
    "q3": ("How do I request annual leave?", "hr/leave-requests.en.md"),
    "q4": ("경비 보고서는 언제까지 제출하나요?", "hr/expense-claims.ko.md"),
}


def test_eval_retrieval_reports_and_records(tmp_path, e5_dir):
    beir = tmp_path / "sample-beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [d for f in iter_files(SAMPLE_KNOWLEDGE) for d in load_file(f, SAMPLE_KNOWLEDGE)]
    (beir / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps(
                {"_id": d.metadata["source"], "title": d.metadata["title"], "text": d.page_content}, ensure_ascii=False
            )
            for d in docs
        )
    )
    (beir / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": text}, ensure_ascii=False) for q, (text, _) in QUERIES.items())
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{doc}\t1\n" for q, (_, doc) in QUERIES.items())
    )
    config = tmp_path / "erp.yaml"
    config.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "embeddings": {"model_path": str(e5_dir)}}))
    result = invoke("eval", "retrieval", "--dataset", str(beir), "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queries"] == 4 and report["documents"] == len(docs)
    by_mode = {m["mode"]: m for m in report["modes"]}
    assert set(by_mode) == {"dense", "sparse", "hybrid"}
    for mode in by_mode.values():
        assert mode["ndcg@10"] > 0.8 and 0 <= mode["recall@5"] <= 1 and 0 < mode["p50_ms"] <= mode["p95_ms"]
    scores = read_scores(tmp_path / "home" / "evaluations.json")
    assert scores["retrieval-ndcg10:sample-beir:hybrid"]["value"] == by_mode["hybrid"]["ndcg@10"]
    metrics = ChatMetrics(gpu=GPUCollector(nvml=None))
    metrics.load_evaluations(scores)
    assert b'erp_accuracy{source="retrieval-ndcg10:sample-beir:dense"}' in generate_latest(metrics.registry)
    kept = list((tmp_path / "home" / "evaluation-vectors").glob("*.npy"))
    assert len(kept) == 1 and np.load(kept[0]).shape == (len(docs), 384)  # the corpus's vectors, reused below

    table = invoke("eval", "retrieval", "--dataset", str(beir), "--config", str(config), "--modes", "sparse")
    assert table.returncode == 0 and table.stdout.splitlines()[1].startswith("sparse")
    refused = invoke("eval", "retrieval", "--dataset", str(beir), "--config", str(config), "--modes", "magic")
    assert refused.returncode != 0 and "--modes" in refused.stderr


def test_eval_refuses_a_folder_that_is_not_beir(tmp_path):
    result = run("eval", "retrieval", "--dataset", str(tmp_path))
    assert result.returncode == 1 and "not a BEIR folder" in result.stderr


def test_demo_gguf_becomes_a_registered_version(tmp_path, models_dir):
    # The demo LLM as the other tests prepared it (converted once in the models folder), imported
    # into a registry of this test's own.
    registry = tmp_path / "registry"
    versions = {"min_free_disk_gb": 0, "registry_dir": str(registry)}
    settings = {"home": str(models_dir.parent), "model_versions": versions}
    config = tmp_path / "erp.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = invoke("models", "import", "--demo", "--config", str(config))
    assert result.returncode == 0, result.stderr
    listed = json.loads(invoke("models", "list", "--config", str(config), "--json").stdout)
    assert listed["active"] == "v1" and listed["versions"]["v1"]["kind"] == "gguf"
    assert listed["versions"]["v1"]["note"] == "qwen2.5-coder-0.5b"
    assert (registry / "versions" / "v1" / "config.json").is_file()


def test_eval_answers_counts_facts_citations_and_declines(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir):
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": "a", "question": "How do I approve a vendor bill?", "gold": ["vendor-bill-approval.en"], "facts": []},
        {
            "question": "재고 이동은 어디서 확인하나요?",
            "gold": ["inventory/stock-moves.ko.md"],
            "facts": ["ZZZ-NOT-THERE"],
        },
        {"id": "u", "question": "Who won the 2018 world cup?", "answerable": False},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    config = tmp_path / "erp.yaml"
    settings = {
        "home": str(tmp_path / "home"),
        "llm": {"model_path": str(tiny_lm_dir), "max_new_tokens": 8, "temperature": 0},
        "embeddings": {"model_path": str(e5_dir)},
        "knowledge": {"index_dir": str(sample_index_dir), "signing_key": SIGNING_KEY},
        "memory": {"redis_url": None},
        "cache": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(settings))
    result = invoke("eval", "answers", "--dataset", str(questions), "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == 3 and report["gold_cited"] == 1.0
    assert report["facts_found"] == 0.5  # no facts asked of the first; an absent one asked of the second
    assert report["answerable_not_declined"] == 1.0 and report["unanswerable_declined"] == 0.0  # cosine only
    assert [c["id"] for c in report["cases"]] == ["a", "2", "u"] and report["p50_seconds"] > 0
    assert read_scores(tmp_path / "home" / "evaluations.json")["answers-facts:questions"]["value"] == 0.5
    assert report["by_language"]["en"]["unanswerable_declined"] == 0.0 and report["by_language"]["ko"]["questions"] == 1
    assert all(c["first_token_seconds"] > 0 and c["language"] in ("en", "ko") for c in report["cases"])

    # The oracle answers from the gold pages' chunks, and has nothing for a question without any.
    result = invoke("eval", "answers", "--dataset", str(questions), "--config", str(config), "--oracle", "--json")
    oracle = json.loads(result.stdout)
    assert oracle["oracle"] and oracle["gold_cited"] == 1.0 and oracle["unanswerable_declined"] == 1.0
    assert [len(c["answer"]) > 0 for c in oracle["cases"]] == [True, True, True]

    questions.write_text(json.dumps({"question": "Where?", "answerable": True}))
    refused = run("eval", "answers", "--dataset", str(questions), "--config", str(config))
    assert refused.returncode != 0 and "needs its 'gold' pages" in refused.stderr
