"""ModelQuantizer on the tiny local GPT-2. CUDA is not here: the GPU path is only checked to refuse."""

import pytest
import torch

from erp_chatbot.devices import CPU_PLACEMENT
from erp_chatbot.models.llm import build_llm, model_version
from erp_chatbot.models.quantize import MARKER, ModelQuantizer, marked_quantization
from erp_chatbot.settings import LLMSettings

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)

CPU = CPU_PLACEMENT


def dynamic_linears(llm) -> int:
    model = llm.llm.pipeline.model
    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


def test_cpu_int8_version_is_a_linked_folder_that_loads_quantized(tmp_path, tiny_lm_dir):
    target = ModelQuantizer().quantize(tiny_lm_dir, tmp_path / "int8")
    assert marked_quantization(target) == "dynamic-int8" and (target / MARKER).is_file()
    weights = next(tiny_lm_dir.glob("*.safetensors"))
    assert (target / weights.name).stat().st_ino == weights.stat().st_ino  # hard link, no second copy
    settings = LLMSettings(max_new_tokens=4, temperature=0)
    assert dynamic_linears(build_llm(target, settings, CPU)) > 0
    assert dynamic_linears(build_llm(tiny_lm_dir, settings, CPU)) == 0
    assert model_version(target, settings) != model_version(tiny_lm_dir, settings)


def test_cpu_int8_by_setting(tiny_lm_dir):
    llm = build_llm(tiny_lm_dir, LLMSettings(max_new_tokens=4, temperature=0, cpu_quantization="dynamic-int8"), CPU)
    assert dynamic_linears(llm) > 0 and llm.invoke("user: hello")


def test_refusals_are_clear(tmp_path, tiny_lm_dir):
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        ModelQuantizer().quantize(tiny_lm_dir, tmp_path / "gpu", device="gpu")
    assert not (tmp_path / "gpu").exists()
    ModelQuantizer().quantize(tiny_lm_dir, tmp_path / "once")
    with pytest.raises(FileExistsError):
        ModelQuantizer().quantize(tiny_lm_dir, tmp_path / "once")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        ModelQuantizer().quantize(tmp_path, tmp_path / "x")
