"""Resources in settings + GPUs actually visible -> a placement plan, and why.

The planner is pure: it is handed what the machine has (``GPUInventory``) so it can be tested for
any GPU count; ``detect_gpus`` is the one place that asks torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from erp_chatbot.settings import Settings

logger = logging.getLogger(__name__)
_logged_fallbacks: set[str] = set()


@dataclass(frozen=True)
class GPUInventory:
    """What the machine offers: total memory (GiB) of each visible CUDA device, by index."""

    memory_gib: tuple[float, ...] = ()
    bitsandbytes: bool = False
    faiss_gpu: bool = False

    @property
    def count(self) -> int:
        return len(self.memory_gib)


@dataclass(frozen=True)
class LLMPlacement:
    device_map: str | dict[str, Any]
    max_memory: dict[int | str, str] | None
    load_in_8bit: bool
    torch_dtype: str
    on_gpu: bool


CPU_PLACEMENT = LLMPlacement("cpu", None, False, "float32", on_gpu=False)


@dataclass(frozen=True)
class DevicePlan:
    llm: LLMPlacement
    embeddings_device: str
    faiss_gpu: int | None
    notes: list[str] = field(default_factory=list)


def detect_gpus() -> GPUInventory:
    """Ask torch (and the optional GPU packages) what is installed and visible."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return GPUInventory()
    sizes = tuple(torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(torch.cuda.device_count()))
    faiss_gpu = False
    if importlib.util.find_spec("faiss") is not None:
        import faiss

        faiss_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    return GPUInventory(
        memory_gib=sizes,
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        faiss_gpu=faiss_gpu,
    )


def plan_devices(settings: Settings, gpus: GPUInventory) -> DevicePlan:
    """Place the LLM, the embeddings and FAISS; fall back to the CPU with a reason, never fail."""
    notes: list[str] = []
    llm = _plan_llm(settings, gpus, notes)
    embed_ids = settings.resources.vector_search.gpu_ids
    visible = [i for i in embed_ids if i < gpus.count]
    embeddings_device = f"cuda:{visible[0]}" if visible else "cpu"
    if embed_ids and not visible:
        notes.append(f"embeddings on CPU: GPU {embed_ids[0]} is not visible")
    faiss_gpu = visible[0] if visible and gpus.faiss_gpu else None
    if visible and not gpus.faiss_gpu:
        notes.append("FAISS search on CPU: no GPU build of faiss is installed (extra 'gpu')")
    plan = DevicePlan(llm=llm, embeddings_device=embeddings_device, faiss_gpu=faiss_gpu, notes=notes)
    _log_once(plan)
    return plan


def _plan_llm(settings: Settings, gpus: GPUInventory, notes: list[str]) -> LLMPlacement:
    if settings.llm.backend == "openai":
        return CPU_PLACEMENT  # nothing loads here: the server at llm.base_url runs the model
    slot = settings.resources.llm
    wanted = [i for i in slot.gpu_ids if i < gpus.count]
    if not wanted:
        how = "through llama.cpp" if settings.llm.backend == "llama-cpp" else "in float32"
        notes.append(
            f"LLM on CPU {how}: configured GPUs {slot.gpu_ids} but {gpus.count} visible"
            + (" (8-bit needs CUDA)" if settings.llm.load_in_8bit and settings.llm.backend == "transformers" else "")
        )
        return CPU_PLACEMENT
    if len(wanted) < len(slot.gpu_ids):
        notes.append(f"LLM on GPUs {wanted} only: configured GPUs {slot.gpu_ids} but {gpus.count} visible")
    load_in_8bit = settings.llm.load_in_8bit and gpus.bitsandbytes
    if settings.llm.load_in_8bit and not gpus.bitsandbytes:
        notes.append("LLM in float16, not 8-bit: bitsandbytes is not installed (extra 'gpu')")
    max_memory: dict[int | str, str] = {i: f"{int(gpus.memory_gib[i] * slot.gpu_memory_fraction)}GiB" for i in wanted}
    max_memory["cpu"] = f"{slot.memory_gib}GiB"
    device_map: str | dict[str, Any] = "auto" if len(wanted) > 1 else {"": wanted[0]}
    return LLMPlacement(device_map, max_memory, load_in_8bit, "float16", on_gpu=True)


def _log_once(plan: DevicePlan) -> None:
    for note in plan.notes:
        if note not in _logged_fallbacks:
            _logged_fallbacks.add(note)
            logger.warning(note)
