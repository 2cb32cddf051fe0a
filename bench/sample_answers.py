"""How-to answers over the bundled sample knowledge, as chat users get them (run by hand).

The demo profile (or --config) answers every question of bench/datasets/sample-howto.jsonl
(8 Korean, 8 English, each the way a user asks for a menu the sample pages give) --draws times,
each in a new session, at the configured temperature (the demo chats at 0.7) and without the
response cache. Reports per language the share of answers that give the page's menu path (either
UI language: the Korean pages name both), that repeat a prose step of the prompt's worked example,
and that grounding flags, with the median seconds per answer.

Results are merged into bench/results/sample-answers.json under --name; for a baseline run the
same command from a worktree of the earlier commit (PYTHONPATH=/path/to/worktree).
    python bench/sample_answers.py --name NAME [--config FILE] [--draws 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from pathlib import Path

from common import machine, merge

from erp_chatbot.chains.grounding import copied_example_steps
from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.cli import load_settings
from erp_chatbot.settings import Settings

DATASET = Path(__file__).resolve().parent / "datasets" / "sample-howto.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="key of this run in the results")
    parser.add_argument("--config", type=Path, help="settings YAML (default: the demo profile and sample knowledge)")
    parser.add_argument("--draws", type=int, default=5, help="answers per question")
    args = parser.parse_args()
    settings = Settings.from_yaml(args.config) if args.config else load_settings(None, demo=True)
    settings = settings.model_copy(update={"cache": settings.cache.model_copy(update={"enabled": False})})
    bot = ERPChatbot.from_settings(settings)
    cases = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [score(bot, case) for case in cases for _ in range(args.draws)]
    result = {
        "machine": machine(),
        "temperature": settings.llm.temperature,
        "draws": args.draws,
        "by_language": {lang: summary([r for r in rows if r["language"] == lang]) for lang in ("ko", "en")},
        "cases": rows,
    }
    path = merge("sample-answers", "runs", args.name, result, {"dataset": DATASET.name})
    print(args.name, json.dumps(result["by_language"], ensure_ascii=False))
    print(f"wrote {path}")


def score(bot: ERPChatbot, case: dict) -> dict:
    start = time.perf_counter()
    answer = bot.ask(case["question"], session_id=f"bench-{uuid.uuid4().hex}")
    seconds = time.perf_counter() - start
    text = answer.text.split("\n\n⚠")[0]  # the answer, without grounding's note quoting a page
    return {
        "id": case["id"],
        "language": case["language"],
        "menu_path": any(_squeezed(path) in _squeezed(text) for path in case["menu_paths"]),
        "copied_example": bool(copied_example_steps(text, "")),
        "flagged": not answer.grounded,
        "seconds": round(seconds, 2),
        "answer": answer.text,
    }


SHARES = ("menu_path", "copied_example", "flagged")


def summary(rows: list[dict]) -> dict:
    shares = {key: round(sum(r[key] for r in rows) / len(rows), 3) for key in SHARES}
    return {"answers": len(rows), **shares, "p50_seconds": round(statistics.median(r["seconds"] for r in rows), 2)}


def _squeezed(text: str) -> str:
    """Menu paths compared without spaces and emphasis, with any path separator as '>'."""
    return "".join(text.replace("‣", ">").replace("›", ">").replace("*", "").replace("`", "").split())


if __name__ == "__main__":
    main()
