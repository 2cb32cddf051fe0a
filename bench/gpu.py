"""The GPU check (#4), run once on a lent CUDA machine: 8-bit loading through the library's own
device planner and LLM factory, tokens/s in float16 vs bitsandbytes int8, and exact vector search
on the GPU vs faiss on the CPU.

No model weights can travel to that machine (64 MiB per call, no hub), so the LLMs are the real
Qwen2.5 architectures (configs and tokenizer of the bundled demo models) with random weights: the
arithmetic per token, and so the speed and memory, is that of the trained model; the text is not.

    python bench/gpu.py --assets .gpu --out results/gpu.json [--budget-s 420]

``--assets`` holds ``qwen2.5-coder-0.5b/`` (config + tokenizer) and ``qwen2.5-coder-1.5b/`` (config),
as ``python bench/gpu.py --write-assets .gpu`` writes them here from the bundled demo models.
``--smoke`` runs every step tiny, on the CPU where no GPU is present, to try the script before
device time is spent on it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

SIZES = {  # name -> (assets folder holding config.json, overrides turning it into that size)
    "qwen2.5-0.5b": ("qwen2.5-coder-0.5b", {}),
    "qwen2.5-1.5b": ("qwen2.5-coder-1.5b", {}),
    # Qwen2.5-7B-Instruct's published shape: the size an ERP team would serve from GPUs 0 and 1.
    "qwen2.5-7b": (
        "qwen2.5-coder-1.5b",
        dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            tie_word_embeddings=False,
        ),
    ),
}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


class Report:
    """Sections of the result, written after each one so a cut-off run still leaves its findings."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict[str, Any] = {}

    def section(self, name: str, run: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            self.data[name] = run()
        except Exception as error:  # one failed check must not hide the others
            self.data[name] = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}
        print(f"[{name}] {time.perf_counter() - started:.1f} s: {json.dumps(self.data[name])[:600]}", flush=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=2, default=str))


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.settings import Settings

    inventory = detect_gpus()
    plan = plan_devices(Settings(), inventory)
    versions = {}
    for name in ("torch", "transformers", "bitsandbytes", "faiss-cpu", "langchain-core", "langchain-huggingface"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda,
        "versions": versions,
        "inventory": {
            "memory_gib": inventory.memory_gib,
            "bitsandbytes": inventory.bitsandbytes,
            "faiss_gpu": inventory.faiss_gpu,
        },
        "default_plan": {
            "llm": vars(plan.llm),
            "embeddings": plan.embeddings_device,
            "faiss_gpu": plan.faiss_gpu,
            "notes": plan.notes,
        },
        "gpu_metrics": gpu_metrics(),
    }


def gpu_metrics() -> dict[str, float]:
    """What /metrics would export, read through the library's NVML collector."""
    from erp_chatbot.monitoring.gpu import GPUCollector

    return {f"{m.name}{s.labels}": s.value for m in GPUCollector().collect() for s in m.samples}


def write_assets(dest: Path) -> None:
    """Configs and tokenizer of the bundled demo LLMs, read from their GGUF files (no weights)."""
    from transformers import AutoConfig, AutoTokenizer

    from erp_chatbot.models.demo import demo_gguf_path
    from erp_chatbot.settings import Settings

    for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        gguf = demo_gguf_path(Settings().models_dir, name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(dest / name)
        if name == "qwen2.5-coder-0.5b":
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(dest / name)


def random_model(assets: Path, size: str, dest: Path, smoke: bool) -> Path:
    """A random-weight float16 model of that architecture, saved as an HF folder with the tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, overrides = SIZES[size]
    config = AutoConfig.from_pretrained(assets / folder)
    for key, value in {**overrides, **(TINY if smoke else {})}.items():
        setattr(config, key, value)
    if getattr(config, "layer_types", None):
        config.layer_types = ["full_attention"] * config.num_hidden_layers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    model.save_pretrained(dest)
    for tokenizer_file in (assets / SIZES["qwen2.5-0.5b"][0]).glob("*"):
        if tokenizer_file.name not in ("config.json", "generation_config.json"):
            shutil.copy(tokenizer_file, dest / tokenizer_file.name)
    del model
    free()
    return dest


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def library_path(model_dir: Path, work: Path) -> dict[str, Any]:
    """The design's path as a user takes it: default resources, the planner, ``build_llm``, one chat
    turn; then ``ModelQuantizer`` writes the int8 version and ``build_llm`` loads it back."""
    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.models.llm import build_llm
    from erp_chatbot.models.quantize import ModelQuantizer
    from erp_chatbot.settings import Settings

    settings = Settings(llm={"model_path": model_dir, "max_new_tokens": 24, "temperature": 0})
    plan = plan_devices(settings, detect_gpus())
    result: dict[str, Any] = {"plan": vars(plan.llm), "notes": plan.notes}
    started = time.perf_counter()
    llm = build_llm(model_dir, settings.llm, plan.llm)
    result["load_s"] = time.perf_counter() - started
    result["loaded"] = describe(llm)
    started = time.perf_counter()
    reply = llm.invoke("재고 이동은 어디서 확인하나요?")
    result["turn_s"] = time.perf_counter() - started
    result["reply_chars"] = len(getattr(reply, "content", reply))
    del llm
    free()
    if not torch.cuda.is_available():
        return result
    target = work / "int8-version"
    started = time.perf_counter()
    ModelQuantizer().quantize(model_dir, target, device="gpu")
    result["quantize_s"] = time.perf_counter() - started
    result["saved_int8_mb"] = sum(f.stat().st_size for f in target.glob("*.safetensors")) / 2**20
    result["saved_fp16_mb"] = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 2**20
    reload = Settings(llm={"model_path": target, "max_new_tokens": 24, "temperature": 0, "load_in_8bit": False})
    reloaded = build_llm(target, reload.llm, plan_devices(reload, detect_gpus()).llm)
    result["reloaded"] = describe(reloaded)
    result["reloaded_reply_chars"] = len(getattr(reloaded.invoke("How do I approve a vendor bill?"), "content", ""))
    del reloaded
    free()
    return result


def batched_serving(model_dir: Path, clients: list[int], load_in_8bit: bool = True) -> dict[str, Any]:
    """Answers/s of the serving path (``llm.batching`` on, default decoding) for 1 client at a time
    vs N concurrent ones, against its ceiling in the same run: ``model.generate`` on the same
    chat-formatted prompts, one alone and the first 16 as one offline batch."""
    import asyncio

    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.models.llm import build_llm, generation_kwargs
    from erp_chatbot.settings import Settings

    settings = Settings(llm={"model_path": model_dir, "max_new_tokens": 64, "load_in_8bit": load_in_8bit})
    llm = build_llm(model_dir, settings.llm, plan_devices(settings, detect_gpus()).llm, settings.batching)
    questions = [f"구매 주문서 PO{i:05d}를 승인하려면 어떻게 하나요? How do I approve it?" for i in range(max(clients))]
    pipeline = llm.llm.pipeline
    prompts = [
        pipeline.tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]

    async def answer_all(n: int) -> tuple[float, int]:
        started = time.perf_counter()
        replies = await asyncio.gather(*(llm.ainvoke(q) for q in questions[:n]))
        return time.perf_counter() - started, sum(len(r.content) for r in replies)

    def offline(n: int) -> None:
        inputs = pipeline.tokenizer(prompts[:n], return_tensors="pt", padding=True).to(pipeline.model.device)
        pad = pipeline.tokenizer.pad_token_id
        with torch.inference_mode():
            pipeline.model.generate(**inputs, pad_token_id=pad, **generation_kwargs(settings.llm))

    asyncio.run(answer_all(2))  # warm-up
    result: dict[str, Any] = {"batching": settings.batching.model_dump(), "max_new_tokens": 64, "int8": load_in_8bit}
    result["offline_1_answers_per_s"] = 1000 / timed(functools.partial(offline, 1), repeats=3)[0]
    result["offline_16_answers_per_s"] = 16 * 1000 / timed(functools.partial(offline, 16), repeats=2)[0]
    single_s = [asyncio.run(answer_all(1))[0] for _ in range(3)]
    result["one_client_answers_per_s"] = 1 / statistics.median(single_s)
    result["one_client_vs_offline_1"] = result["one_client_answers_per_s"] / result["offline_1_answers_per_s"]
    batch_sizes = llm.llm.batcher.batch_sizes
    for n in clients:
        batch_sizes.clear()
        seconds, chars = asyncio.run(answer_all(n))
        result[f"{n}_clients_answers_per_s"] = n / seconds
        result[f"{n}_clients_vs_one"] = (n / seconds) / result["one_client_answers_per_s"]
        result[f"{n}_clients_vs_offline_16"] = (n / seconds) / result["offline_16_answers_per_s"]
        result[f"{n}_clients_batch_sizes"] = list(batch_sizes)
        result[f"{n}_clients_chars"] = chars
    return result  # the model is freed with this frame, before the next section's free()


def describe(llm: Any) -> dict[str, Any]:
    model = getattr(llm, "llm", llm).pipeline.model
    return {
        "class": type(llm).__name__,
        "loaded_in_8bit": bool(getattr(model, "is_loaded_in_8bit", False)),
        "device_map": getattr(model, "hf_device_map", None),
        "int8_linear_layers": sum(type(m).__name__ == "Linear8bitLt" for m in model.modules()),
        "footprint_mb": model.get_memory_footprint() / 2**20,
    }


def generation_speed(model_dir: Path, int8: bool, prompt_tokens: int, new_tokens: int, batches: list[int]) -> dict:
    """Tokens/s of ``generate`` on random prompts, every run forced to ``new_tokens`` tokens."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.float16 if on_gpu else torch.float32}
    kwargs["device_map"] = {"": 0} if on_gpu else "cpu"
    if int8:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    result: dict[str, Any] = {"load_s": time.perf_counter() - started}
    result["footprint_mb"] = model.get_memory_footprint() / 2**20
    for batch in batches:
        ids = torch.randint(100, min(model.config.vocab_size, 100_000), (batch, prompt_tokens), device=model.device)
        generate = functools.partial(
            model.generate,
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        seconds, out = timed(generate, repeats=2, pick=min)
        assert out.shape[1] == prompt_tokens + new_tokens
        result[f"batch_{batch}"] = {"s": seconds / 1000, "tokens_per_s": batch * new_tokens * 1000 / seconds}
    if on_gpu:
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    del model
    free()
    return result


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def vector_search(sizes: list[int], dim: int, query_counts: list[int], k: int) -> dict[str, Any]:
    """faiss ``IndexFlatIP`` on all CPU cores vs the same exact inner-product search as one matrix
    product + top-k on the GPU (what faiss's ``GpuIndexFlatIP`` does), vectors normalised as ours are."""
    import faiss

    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"faiss_threads": faiss.omp_get_max_threads(), "dim": dim, "k": k}
    for n in sizes:
        base = rng.standard_normal((n, dim), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        cpu = faiss.IndexFlatIP(dim)
        cpu.add(base)
        on_gpu = torch.cuda.is_available()
        gpu_base = torch.from_numpy(base).to("cuda" if on_gpu else "cpu")
        gpu_half = gpu_base.half() if on_gpu else None
        for nq in query_counts:
            queries = base[rng.integers(0, n, nq)] + 0.05 * rng.standard_normal((nq, dim), dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            cpu_ms, (_, cpu_ids) = timed(functools.partial(cpu.search, queries, k))
            row: dict[str, Any] = {"faiss_cpu_ms": cpu_ms}
            for name, matrix in (("torch_gpu_fp32", gpu_base), ("torch_gpu_fp16", gpu_half)):
                if matrix is None:
                    continue
                ms, ids = timed(functools.partial(torch_search, matrix, queries, k))
                row[f"{name}_ms"] = ms
                row[f"{name}_speedup"] = cpu_ms / ms
                overlap = [len(set(a) & set(b)) / k for a, b in zip(ids, cpu_ids, strict=True)]
                row[f"{name}_recall"] = float(np.mean(overlap))
            result[f"n{n}_q{nq}"] = row
        del cpu, gpu_base, gpu_half
        free()
    return result


def torch_search(matrix: torch.Tensor, queries: np.ndarray, k: int) -> np.ndarray:
    q = torch.from_numpy(queries).to(matrix.device, matrix.dtype)
    return torch.topk(q @ matrix.T, k, dim=1).indices.cpu().numpy()


def timed(run: Callable[[], Any], repeats: int = 7, pick: Callable = statistics.median) -> tuple[float, Any]:
    """Milliseconds of ``repeats`` runs after one warm-up (kernels, allocator), their median by
    default, and the last result."""
    out = run()
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        out = run()
        sync()
        times.append((time.perf_counter() - started) * 1000)
    return pick(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, help="configs + tokenizer (see --write-assets)")
    parser.add_argument("--write-assets", type=Path, metavar="DIR", help="write the assets here and stop")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu.json")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for the random models")
    parser.add_argument("--budget-s", type=float, default=420, help="skip the larger models past this")
    parser.add_argument("--smoke", action="store_true", help="tiny models and indexes, to try the script")
    parser.add_argument("--only-serving", action="store_true", help="only the batched serving, int8 and fp16")
    args = parser.parse_args()
    if args.write_assets:
        return write_assets(args.write_assets)
    if not args.assets:
        parser.error("--assets is required (write them first with --write-assets DIR)")
    started = time.perf_counter()
    left = lambda: args.budget_s - (time.perf_counter() - started)  # noqa: E731
    work = Path(args.work or tempfile.mkdtemp(prefix="erp-gpu-"))
    report = Report(args.out)
    report.data["machine"] = "smoke run" if args.smoke else "device"
    report.section("environment", environment)
    small = random_model(args.assets, "qwen2.5-0.5b", work / "qwen2.5-0.5b", args.smoke)
    if args.only_serving:
        for int8 in (True, False):
            report.section(
                f"batched_serving_{'int8' if int8 else 'fp16'}",
                functools.partial(batched_serving, small, [16, 64], int8),
            )
        return
    report.section("library_path", functools.partial(library_path, small, work))
    n = [2_000] if args.smoke else [100_000, 1_000_000]
    report.section("vector_search", functools.partial(vector_search, n, 384, [1, 16, 1024], 5))
    prompt, new = (16, 4) if args.smoke else (512, 64)
    int8 = torch.cuda.is_available()  # bitsandbytes int8 needs CUDA
    report.section("speed_qwen2.5-0.5b", functools.partial(speed_pair, small, int8, prompt, new))
    report.section("batched_serving", functools.partial(batched_serving, small, [16, 64]))
    for size, estimate in {"qwen2.5-1.5b": 80, "qwen2.5-7b": 200}.items():  # seconds both modes take
        if left() < estimate:
            report.data[f"speed_{size}"] = {"skipped": f"{left():.0f} s of the budget left"}
            continue
        folder = random_model(args.assets, size, work / size, args.smoke)
        report.section(f"speed_{size}", functools.partial(speed_pair, folder, int8, prompt, new))
        shutil.rmtree(folder, ignore_errors=True)
    report.data["total_s"] = time.perf_counter() - started
    report.out.write_text(json.dumps(report.data, indent=2, default=str))


def speed_pair(folder: Path, int8: bool, prompt: int, new: int) -> dict[str, Any]:
    fp16 = generation_speed(folder, False, prompt, new, [1, 16])
    result: dict[str, Any] = {"prompt_tokens": prompt, "new_tokens": new, "fp16": fp16}
    if int8:
        q = generation_speed(folder, True, prompt, new, [1, 16])
        result["int8"] = q
        result["int8_vs_fp16"] = {b: q[b]["tokens_per_s"] / fp16[b]["tokens_per_s"] for b in ("batch_1", "batch_16")}
        result["int8_memory_vs_fp16"] = q["footprint_mb"] / fp16["footprint_mb"]
    return result


if __name__ == "__main__":
    main()
