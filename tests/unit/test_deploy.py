"""deploy/compose.yaml agrees with the settings' design defaults (GPUs, memory limits, Redis)."""

from pathlib import Path

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
