"""Answer quality on the held-out Odoo set, per split and language, beside an earlier chain in one run.

The set (bench/datasets/odoo-heldout.jsonl) was written from the manual's pages by someone who never
saw the chain's answers; tune on its dev split only, report on test. Each arm asks every question
of the chosen splits in a new session, greedy and without the response cache, and is scored by
``erp_chatbot.evaluation`` (facts matched by ``fact_found``):

- ``--arm NAME=CONFIG``: the current code with that settings YAML (e.g. bench/odoo-extract.yaml);
- ``--baseline REV``: the chain as committed at git revision REV, from a worktree under /tmp, with
  ``--baseline-config`` (its index in a folder of its own: its chunking), asked through its own
  ``erp-chatbot eval answers --json``;
  its answer texts are re-scored here, so both arms are scored alike. Its ``invented`` is its own
  grounding's verdict (a claim no chunk holds, or a worked-example step left out).

    python bench/answer_quality.py --arm extract=bench/odoo-extract.yaml --baseline 264ddca

Results go to bench/results/answer-quality.json (one key per arm, with the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import RESULTS, machine, merge

from erp_chatbot.evaluation import (
    AnswerCase,
    answer_language,
    answering_settings,
    evaluate_answers,
    fact_found,
    load_answer_cases,
    summarise,
)

BENCH = Path(__file__).resolve().parent
DATASET = BENCH / "datasets" / "odoo-heldout.jsonl"
ODOO = BENCH.parent.parent / "shared" / "data" / "odoo-docs-14.0" / "en"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", action="append", default=[], help="NAME=CONFIG: the current code with CONFIG")
    parser.add_argument("--baseline", help="git revision of the earlier chain to run beside the arms")
    parser.add_argument("--baseline-config", type=Path, default=BENCH / "odoo-baseline.yaml", help="its settings")
    parser.add_argument("--split", choices=["dev", "test"], help="only this split (default: both)")
    parser.add_argument("--language", choices=["en", "ko"], help="only this language's questions (default: both)")
    parser.add_argument("--table", action="store_true", help="print the recorded arms as a Markdown table")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((RESULTS / "answer-quality.json").read_text())["arms"]))
        return
    cases = [case for case in load_answer_cases(DATASET, args.split) if args.language in (None, case.language)]
    scope = ":".join(part for part in (args.split, args.language) if part)
    for arm in args.arm:
        name, _, config = arm.partition("=")
        result = run_current(Path(config), cases)
        if args.split == "dev":
            result["decline_thresholds"] = decline_thresholds(result["report"]["cases"])
            print(name, "decline thresholds for 95% answered:", result["decline_thresholds"])
        record(name, {"config": config, **result}, scope)
    if args.baseline:
        record(f"baseline-{args.baseline}", run_revision(args.baseline, args.baseline_config, cases), scope)


ROWS = {  # what the table shows, and how
    "answerable_not_declined": "answerable questions answered",
    "unanswerable_declined": "unanswerable questions declined",
    "facts_half": "at least half the expected facts",
    "facts_found": "all the expected facts",
    "gold_cited": "a gold page among the sources",
    "nothing_invented": "no UI name or number that no section holds",
    "lead_in_language": "first line in the question's language",
    "in_language": "the whole answer's prose in the question's language",
    "p50_first_token_seconds": "p50 seconds to the first content",
    "p50_seconds": "p50 seconds to the complete answer",
}


def table(arms: dict[str, dict]) -> str:
    """Per split and language, each arm's figures side by side."""
    lines = []
    for split in ("test", "dev"):
        for language in ("en", "ko"):
            shown = {
                name: arm["report"]["by_split"][split][language]
                for name, arm in arms.items()
                if arm["report"].get("by_split", {}).get(split, {}).get(language, {}).get("questions")
            }
            if not shown:
                continue
            lines += [
                f"\n{split} split, {language} ({next(iter(shown.values()))['questions']} questions)\n",
                "| | " + " | ".join(shown) + " |",
                "| --- |" + " --- |" * len(shown),
            ]
            for key, label in ROWS.items():
                cells = [_cell(summary.get(key), key) for summary in shown.values()]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if "seconds" in key else f"{100 * value:.0f}%"


def decline_thresholds(rows: list[dict], answered: float = 0.95) -> dict[str, dict]:
    """Per language: the highest ``answer.decline_below`` that still leaves ``answered`` of the
    answerable questions of ``rows`` over it, and the share of unanswerable ones it declines."""
    found = {}
    for language in ("en", "ko"):
        mine = [r for r in rows if r["language"] == language and r.get("support") is not None]
        scores = sorted(r["support"] for r in mine if r["answerable"])
        if not scores:
            continue
        threshold = scores[int(len(scores) * (1 - answered))]  # this many answerable score at least that
        unanswerable = [r["support"] for r in mine if not r["answerable"]]
        declined = sum(score < threshold for score in unanswerable) / len(unanswerable) if unanswerable else None
        found[language] = {"decline_below": threshold, "unanswerable_declined": declined}
    return found


def record(name: str, result: dict, scope: str) -> None:
    key = f"{name}:{scope}" if scope else name
    path = merge("answer-quality", "arms", key, {"machine": machine(), **result}, {"dataset": DATASET.name})
    for split_name, languages in result["report"].get("by_split", {}).items():
        for language, summary in languages.items():
            if summary["questions"]:
                print(key, split_name, language, {k: v for k, v in summary.items() if k != "questions"})
    print(f"wrote {path}")


def run_current(config: Path, cases: list[AnswerCase]) -> dict:
    from erp_chatbot.chatbot import ERPChatbot
    from erp_chatbot.cli import run_ingest
    from erp_chatbot.settings import Settings

    settings = answering_settings(Settings.from_yaml(config))  # greedy, no cache: reproducible
    run_ingest(settings, ODOO, settings.index_dir, progress=False)  # a no-op when up to date
    bot = ERPChatbot.from_settings(settings)
    report = evaluate_answers(lambda question: bot.ask(question), cases)
    return {"answer_mode": bot.answer_mode, "report": report}


def run_revision(revision: str, config: Path, cases: list[AnswerCase]) -> dict:
    """The chain at ``revision``, asked through its own CLI; its answers re-scored with this code."""
    worktree = Path("/tmp") / f"erp-chatbot-{revision}"
    if not worktree.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), revision], check=True, cwd=BENCH.parent)
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    cli = [sys.executable, "-c", "from erp_chatbot.cli import main; main()"]
    subprocess.run(
        [*cli, "ingest", str(ODOO), "--config", str(config.resolve())],
        check=True,
        env=env,
        cwd=worktree,
    )
    questions = worktree / "questions.jsonl"
    questions.write_text("".join(json.dumps(case.__dict__, ensure_ascii=False) + "\n" for case in cases))
    done = subprocess.run(
        [*cli, "eval", "answers", "--config", str(config.resolve()), "--dataset", str(questions), "--json"],
        check=True,
        env=env,
        cwd=worktree,
        capture_output=True,
        text=True,
    )
    theirs = {row["id"]: row for row in json.loads(done.stdout)["cases"]}
    return {"revision": revision, "report": summarise([rescore(case, theirs[case.id]) for case in cases])}


def rescore(case: AnswerCase, row: dict) -> dict:
    """A row of the earlier chain's report, scored as ``evaluation`` scores the current one."""
    found = [fact for fact in case.facts if fact_found(fact, row["answer"])]
    first_line = row["answer"].strip().split("\n", 1)[0]
    return {
        **row,
        "split": case.split,
        "facts": len(found) == len(case.facts) and not row["declined"],
        "facts_half": 2 * len(found) >= len(case.facts) and not row["declined"],
        "facts_found": found,
        "in_language": answer_language(row["answer"]) == case.language,
        "lead_in_language": answer_language(first_line) == case.language,
        "invented": [] if row["grounded"] else ["(flagged by its grounding)"],
    }


if __name__ == "__main__":
    main()
