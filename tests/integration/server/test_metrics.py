"""/metrics scraped over HTTP after real requests; feedback; NVML gauges (NVML faked: no GPU here)."""

import uuid
from types import SimpleNamespace

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from erp_chatbot.monitoring.gpu import GPUCollector
from erp_chatbot.monitoring.metrics import ChatMetrics
from tests.integration.server.test_server import base_url, body  # noqa: F401 - base_url is a fixture


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, labels[k]) in ls for k in labels))


def test_metrics_follow_real_requests(base_url, session_id):  # noqa: F811
    before = scrape(base_url)
    assert httpx.post(f"{base_url}/erp/invoke", json=body("How do I request leave?", session_id), timeout=60).is_success
    with httpx.stream(
        "POST", f"{base_url}/erp/stream", json=body("How do I count stock?", session_id), timeout=60
    ) as r:
        assert r.status_code == 200 and sum(1 for _ in r.iter_lines()) > 5
    after = scrape(base_url)
    version = next(dict(ls)["model_version"] for (n, ls) in after if n == "erp_inference_seconds_count")
    assert (
        value(after, "erp_inference_seconds_count", model_version=version)
        - value(before, "erp_inference_seconds_count", model_version=version)
        == 2
    )
    assert (
        value(after, "erp_requests_total", outcome="answered") - value(before, "erp_requests_total", outcome="answered")
        == 2
    )
    assert value(after, "erp_time_to_first_token_seconds_count") > value(
        before, "erp_time_to_first_token_seconds_count"
    )
    assert value(after, "erp_tokens_per_second_count") > value(before, "erp_tokens_per_second_count")
    assert value(after, "erp_retrieval_top_score_count") - value(before, "erp_retrieval_top_score_count") == 2
    assert value(after, "erp_cache_lookups_total", result="miss") >= 0


def test_errors_are_counted(base_url, session_id):  # noqa: F811
    before = value(scrape(base_url), "erp_errors_total")
    too_long = "How do I approve " + "bills " * 5000 + "?"  # longer than the tiny model's 4096 positions
    response = httpx.post(f"{base_url}/erp/invoke", json=body(too_long, session_id), timeout=120)
    assert response.status_code == 500
    assert value(scrape(base_url), "erp_errors_total") == before + 1


def test_feedback_counts_once_per_answer_its_caller_received(base_url, session_id):  # noqa: F811
    # #31: any key holder could vote without limit with a made-up run_id (20 votes moved
    # erp_accuracy{source="feedback"} from 1.0 to 0.23).
    before = scrape(base_url)
    made_up = httpx.post(f"{base_url}/feedback", json={"run_id": str(uuid.uuid4()), "vote": "down"})
    assert made_up.status_code == 404 and "run_id" in made_up.json()["detail"]
    questions = ("How do I request leave?", "How do I count stock?", "How do I submit an expense?")
    runs = [
        httpx.post(f"{base_url}/erp/invoke", json=body(q, session_id), timeout=60).json()["metadata"]["run_id"]
        for q in questions
    ]
    for run_id, vote in zip(runs, ("up", "up", "down"), strict=True):
        assert httpx.post(f"{base_url}/feedback", json={"run_id": run_id, "vote": vote}).status_code == 204
    assert httpx.post(f"{base_url}/feedback", json={"run_id": runs[2], "vote": "down"}).status_code == 404  # once
    samples = scrape(base_url)
    assert value(samples, "erp_feedback_total", vote="up") - value(before, "erp_feedback_total", vote="up") == 2
    assert value(samples, "erp_feedback_total", vote="down") - value(before, "erp_feedback_total", vote="down") == 1
    assert 0 < value(samples, "erp_accuracy", source="feedback") < 1
    assert httpx.post(f"{base_url}/feedback", json={"run_id": runs[0], "vote": "maybe"}).status_code == 422


def test_evaluation_scores_are_exposed():
    metrics = ChatMetrics(gpu=GPUCollector(nvml=None))
    metrics.record_evaluation("odoo-retrieval-ndcg", 0.91)
    assert b'erp_accuracy{source="odoo-retrieval-ndcg"} 0.91' in generate_latest(metrics.registry)


def test_gpu_gauges_with_a_fake_nvml():
    """NVML cannot run on this machine: a stand-in module answers as the real one would."""
    fake = SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30),
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=50 + h),
        nvmlDeviceGetTemperature=lambda h, kind: 60 + h,
    )
    text = generate_latest(ChatMetrics(gpu=GPUCollector(nvml=fake)).registry).decode()
    assert 'erp_gpu_utilization_percent{gpu="1"} 51.0' in text
    assert 'erp_gpu_temperature_celsius{gpu="0"} 60.0' in text
    assert 'erp_gpu_memory_used_bytes{gpu="0"} 1.073741824e+09' in text


def test_no_gpu_means_no_gpu_metrics():
    text = generate_latest(ChatMetrics().registry).decode()
    assert "erp_gpu_" not in text


def test_grafana_dashboard_uses_only_metrics_we_export():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[3] / "deploy" / "grafana" / "erp-chatbot.json").read_text())
    fake_nvml = SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=1, total=2),
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=1),
        nvmlDeviceGetTemperature=lambda h, k: 1,
    )
    metrics = ChatMetrics(gpu=GPUCollector(nvml=fake_nvml))
    metrics.record_feedback(True)
    families = [f.name for f in metrics.registry.collect()]
    exported = {f + suffix for f in families for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\berp_[a-z_]+", target["expr"])
    }
    assert used and used <= exported, used - exported
