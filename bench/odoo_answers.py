"""Whole answers on our bilingual Odoo set, per model, with retrieval and with the oracle context.

For one configuration (a settings YAML: backend, demo model, prompt budget, translation), asks every
question of bench/datasets/odoo-bilingual.jsonl in a new session, greedy and without the response
cache, twice: through the full chain, and with the oracle retriever (the 3 chunks of the gold
pages closest to the question: the ceiling retrieval cannot raise). Reports per language the share
of answers holding the expected facts, citing a gold page, in the question's language, declined,
grounded, and the median seconds to the complete answer and to its first token.

Results are merged into bench/results/odoo-answers-models.json under --name, so configurations can be
run one after another:  python bench/odoo_answers.py --config FILE --name NAME [--no-oracle | --no-chain]
The index is the one the config names; `bench/odoo.yaml` is the demo chain over the Odoo manual.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine, merge

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.evaluation import OracleRetriever, evaluate_answers, load_answer_cases
from erp_chatbot.models.llm import llm_path
from erp_chatbot.settings import Settings

DATASET = Path(__file__).resolve().parent / "datasets" / "odoo-bilingual.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="settings YAML of the configuration")
    parser.add_argument("--name", required=True, help="key of this configuration in the results")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle-context run")
    parser.add_argument("--no-chain", action="store_true", help="skip the chain run (the oracle alone)")
    parser.add_argument("--language", choices=["en", "ko"], help="only the questions in this language")
    args = parser.parse_args()
    settings = Settings.from_yaml(args.config)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(update={"temperature": 0.0}),  # greedy: reproducible
            "cache": settings.cache.model_copy(update={"enabled": False}),
        }
    )
    cases = [c for c in load_answer_cases(DATASET) if args.language in (None, c.language)]
    bot = ERPChatbot.from_settings(settings)
    result = {
        "machine": machine(),
        "model": f"{settings.llm.backend}:{llm_path(settings).name}",
        "settings": {
            "max_new_tokens": settings.llm.max_new_tokens,
            "prompt_document_tokens": settings.llm.prompt_document_tokens,
            "translate_queries": settings.retrieval.translate_queries,
            "coverage_check": settings.retrieval.coverage_check,
            "cpu_quantization": settings.llm.cpu_quantization,
        },
    }
    if not args.no_chain:
        result["chain"] = evaluate_answers(lambda q: bot.ask(q), cases)
    if not args.no_oracle:
        gold = {case.question: case.gold for case in cases}
        bot.use_retriever(OracleRetriever(index=bot.index, embeddings=bot.embeddings, gold=gold))
        result["oracle"] = evaluate_answers(lambda q: bot.ask(q), cases)
        if "chain" in result:
            result["chain_vs_oracle_facts"] = _ratios(result["chain"], result["oracle"])
    path = merge("odoo-answers-models", "configurations", args.name, result, {"dataset": DATASET.name})
    for run in ("chain", "oracle"):
        if run in result:
            for language, summary in result[run]["by_language"].items():
                print(args.name, run, language, summary)
    print(f"wrote {path}")


def _ratios(chain: dict, oracle: dict) -> dict:
    """Facts found through the chain / with the oracle context, per language."""
    ratios = {}
    for language in ("en", "ko"):
        full, ceiling = chain["by_language"][language]["facts_found"], oracle["by_language"][language]["facts_found"]
        ratios[language] = round(full / ceiling, 2) if ceiling else None  # None also when not run
    return ratios


if __name__ == "__main__":
    main()
