"""The device planner for 0-3 GPUs. CUDA is not on the CI machine: the GPU inventory is injected."""

import logging

import pytest

from erp_chatbot import devices
from erp_chatbot.devices import GPUInventory, plan_devices
from erp_chatbot.settings import Settings


def gpus(n: int, *, bnb: bool = True, faiss_gpu: bool = True) -> GPUInventory:
    return GPUInventory(memory_gib=(80.0,) * n, bitsandbytes=bnb, faiss_gpu=faiss_gpu)


@pytest.fixture(autouse=True)
def _fresh_log_memory(monkeypatch):
    monkeypatch.setattr(devices, "_logged_fallbacks", set())


def test_no_gpu_falls_back_to_cpu_without_8bit(caplog):
    with caplog.at_level(logging.WARNING, logger="erp_chatbot.devices"):
        plan = plan_devices(Settings(), gpus(0))
    assert plan.llm.device_map == "cpu" and not plan.llm.on_gpu
    assert plan.llm.load_in_8bit is False and plan.llm.torch_dtype == "float32"
    assert plan.embeddings_device == "cpu" and plan.faiss_gpu is None
    assert any("LLM on CPU" in r.message and "0 visible" in r.message for r in caplog.records)


def test_one_visible_gpu_of_two_configured_still_holds_the_llm(caplog):
    """A single-GPU workstation with the default settings runs the model on GPU 0, not the CPU."""
    with caplog.at_level(logging.WARNING, logger="erp_chatbot.devices"):
        plan = plan_devices(Settings(), gpus(1))
    assert plan.llm.on_gpu and plan.llm.load_in_8bit and plan.llm.device_map == {"": 0}
    assert plan.llm.max_memory == {0: "72GiB", "cpu": "64GiB"}
    assert plan.embeddings_device == "cpu"
    assert any("LLM on GPUs [0] only" in r.message for r in caplog.records)


def test_three_gpus_follow_the_design():
    plan = plan_devices(Settings(), gpus(3))
    assert plan.llm.on_gpu and plan.llm.load_in_8bit and plan.llm.device_map == "auto"
    assert plan.llm.max_memory == {0: "72GiB", 1: "72GiB", "cpu": "64GiB"}
    assert plan.embeddings_device == "cuda:2"
    assert plan.faiss_gpu == 2
    assert plan.notes == []


def test_two_gpus_hold_the_llm_and_leave_embeddings_on_cpu():
    plan = plan_devices(Settings(), gpus(2))
    assert plan.llm.on_gpu and plan.llm.load_in_8bit
    assert set(plan.llm.max_memory) == {0, 1, "cpu"}
    assert plan.embeddings_device == "cpu" and plan.faiss_gpu is None
    assert any("GPU 2 is not visible" in n for n in plan.notes)


def test_two_gpus_can_share_the_embeddings_when_configured():
    settings = Settings(resources={"vector_search": {"gpu_ids": [1]}})
    plan = plan_devices(settings, gpus(2))
    assert plan.llm.on_gpu and set(plan.llm.max_memory) == {0, 1, "cpu"}
    assert plan.embeddings_device == "cuda:1"


def test_one_configured_gpu_pins_the_whole_model():
    settings = Settings(resources={"llm": {"gpu_ids": [0]}, "vector_search": {"gpu_ids": [0]}})
    plan = plan_devices(settings, gpus(1))
    assert plan.llm.device_map == {"": 0}
    assert plan.embeddings_device == "cuda:0"


def test_missing_gpu_packages_are_explained():
    plan = plan_devices(Settings(), gpus(3, bnb=False, faiss_gpu=False))
    assert plan.llm.on_gpu and not plan.llm.load_in_8bit and plan.llm.torch_dtype == "float16"
    assert plan.faiss_gpu is None
    assert any("bitsandbytes" in n for n in plan.notes) and any("faiss" in n for n in plan.notes)


def test_fallback_is_logged_once(caplog):
    with caplog.at_level(logging.WARNING, logger="erp_chatbot.devices"):
        plan_devices(Settings(), gpus(0))
        plan_devices(Settings(), gpus(0))
    assert sum("LLM on CPU" in r.message for r in caplog.records) == 1


def test_detect_gpus_on_this_machine_never_crashes():
    inventory = devices.detect_gpus()
    assert inventory.count >= 0
