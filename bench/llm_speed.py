"""Speed of each LLM the demo can use, on the same chat prompt, in one run (run by hand).

For transformers 0.5B in float32 (the baseline) and dynamic int8, and llama.cpp 0.5B and 1.5B on
the same GGUF weights: load time, time to the first streamed token of a prompt like the chain's
(an Odoo page, ~600 tokens), and decoding tokens/s after it (greedy, 96 new tokens), each as the
chain calls the model (a LangChain chat model's `stream`).
Writes bench/results/llm-speed.json.   python bench/llm_speed.py [--out NAME]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import write

from erp_chatbot.chains.prompts import answer_prompt
from erp_chatbot.devices import CPU_PLACEMENT
from erp_chatbot.models.demo import demo_gguf_path, demo_llm_path
from erp_chatbot.models.llm import build_llm
from erp_chatbot.settings import LLMSettings, Settings

ODOO = Path(__file__).resolve().parents[2] / "shared/data/odoo-docs-14.0/en"
PAGE = ODOO / "applications__finance__accounting__receivables__customer_invoices__credit_notes.txt"
QUESTION = "A customer was overcharged on an invoice we already validated. How do I give them money back?"
NEW_TOKENS = 96


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="llm-speed", help="results file name, e.g. for another CPU")
    args = parser.parse_args()
    models_dir = Settings().models_dir
    messages = answer_prompt("en").format_messages(context=PAGE.read_text()[:2400], question=QUESTION)
    runs = {
        "transformers 0.5B float32": (demo_llm_path(models_dir), LLMSettings(cpu_quantization="none")),
        "transformers 0.5B dynamic int8": (demo_llm_path(models_dir), LLMSettings(cpu_quantization="dynamic-int8")),
        "llama.cpp 0.5B": (demo_gguf_path(models_dir, "qwen2.5-coder-0.5b"), LLMSettings(backend="llama-cpp")),
        "llama.cpp 1.5B": (demo_gguf_path(models_dir, "qwen2.5-coder-1.5b"), LLMSettings(backend="llama-cpp")),
    }
    results = {}
    for name, (path, settings) in runs.items():
        settings = settings.model_copy(update={"temperature": 0.0, "max_new_tokens": NEW_TOKENS, "prompt_cache_mb": 0})
        start = time.perf_counter()
        llm = build_llm(path, settings, CPU_PLACEMENT)
        results[name] = {"load_s": round(time.perf_counter() - start, 2), **_generate(llm, messages)}
        # the messages' text (the chat template adds a few tokens): prompt evaluation rate, roughly
        results[name]["prompt_tokens"] = _count(llm, "\n".join(message.text for message in messages))
        print(name, results[name], flush=True)
        del llm
    base = results["transformers 0.5B float32"]
    for figures in results.values():
        figures["prompt_tokens_per_s"] = round(figures["prompt_tokens"] / figures["first_token_s"], 1)
        figures["decode_vs_fp32"] = round(figures["decode_tokens_per_s"] / base["decode_tokens_per_s"], 2)
        figures["first_token_vs_fp32"] = round(figures["first_token_s"] / base["first_token_s"], 2)
    print(write(args.out, {"new_tokens": NEW_TOKENS, "runs": results}))


def _generate(llm, messages) -> dict:
    start = time.perf_counter()
    first = None
    chunks = 0
    text = ""
    for chunk in llm.stream(messages):
        if chunk.content:
            first = first or time.perf_counter() - start
            chunks += 1
            text += chunk.content
    total = time.perf_counter() - start
    tokens = _count(llm, text)
    return {
        "first_token_s": round(first, 2),
        "total_s": round(total, 2),
        "new_tokens": tokens,
        "decode_tokens_per_s": round((tokens - 1) / (total - first), 1),
        "answer": text,
    }


def _count(llm, text: str) -> int:
    tokenizer = getattr(llm, "tokenizer", None)
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return llm.get_num_tokens(text)


if __name__ == "__main__":
    main()
