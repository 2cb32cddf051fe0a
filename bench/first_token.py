"""Time to the first answer token through the chain, with llama.cpp's saved prompt states as
llama-cpp-python saves them and as ``models.llama_cpp.prompt_state_cache`` keeps them (run by hand).

Each question of bench/datasets/odoo-bilingual.jsonl (or one language) goes through
``ERPChatbot.stream`` in a new session, greedy, no response cache, answers capped at one token
(so each turn ends at its first token; translation and coverage check as configured). Both
variants get the same RAM for states (``llm.prompt_cache_mb`` of the config) and run one after
the other in one process:

- ``upstream states``: every state keeps its copy of the logits buffer (``n_batch`` rows of
  vocabulary floats), counted in the bound, as before;
- ``one row of logits``: what ships.

Writes bench/results/first-token.json:
    python bench/first_token.py --config FILE [--language ko]
The config names the Odoo index and the demo LLM settings, e.g. `bench/odoo.yaml`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import machine, p50, write

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.evaluation import load_answer_cases
from erp_chatbot.models.llama_cpp import prompt_state_cache
from erp_chatbot.settings import Settings

DATASET = Path(__file__).resolve().parent / "datasets" / "odoo-bilingual.jsonl"


def upstream_states(capacity_bytes: int):
    """The cache before: the shipped bound, but each state stored as upstream saves it, logits copy included."""
    from llama_cpp import LlamaRAMCache

    class WholeStates(type(prompt_state_cache(0))):
        __setitem__ = LlamaRAMCache.__setitem__

    return WholeStates(capacity_bytes=capacity_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--language", choices=["en", "ko"])
    args = parser.parse_args()
    settings = Settings.from_yaml(args.config)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(update={"temperature": 0.0, "max_new_tokens": 1}),
            "cache": settings.cache.model_copy(update={"enabled": False}),
        }
    )
    cases = [c for c in load_answer_cases(DATASET) if args.language in (None, c.language)]
    bot = ERPChatbot.from_settings(settings)
    capacity = settings.llm.prompt_cache_mb << 20
    runs = {}
    for name, cache in (("upstream states", upstream_states), ("one row of logits", prompt_state_cache)):
        bot.llm._client.set_cache(cache(capacity))
        rows = []
        for case in cases:
            rows.append({"id": case.id, "seconds": round(_first_token(bot, case.question), 2)})
            print(name, rows[-1], flush=True)
        states = bot.llm._client.cache.cache_state.values()
        runs[name] = {
            "p50_first_token_seconds": {
                language: round(p50([r["seconds"] for r in rows if r["id"].endswith(language)]), 2)
                for language in ("en", "ko")
                if any(r["id"].endswith(language) for r in rows)
            },
            "states_held_at_end": len(states),
            "mb_per_state": round(sum(s.llama_state_size + s.scores.nbytes for s in states) / len(states) / 2**20, 1),
            "questions": rows,
        }
        print(name, {k: v for k, v in runs[name].items() if k != "questions"}, flush=True)
    before, after = (runs[n]["p50_first_token_seconds"] for n in runs)
    result = {
        "settings": {
            "prompt_cache_mb": settings.llm.prompt_cache_mb,
            "coverage_check": settings.retrieval.coverage_check,
        },
        "runs": runs,
        "one_row_vs_upstream": {language: round(after[language] / before[language], 2) for language in after},
    }
    print(write("first-token", {"machine": machine(), **result}))


def _first_token(bot: ERPChatbot, question: str) -> float:
    start = time.perf_counter()
    first = None
    for _ in bot.stream(question, session_id=bot.new_session_id()):
        first = first or time.perf_counter() - start
    return first


if __name__ == "__main__":
    main()
