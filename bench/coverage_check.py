"""Can the demo model tell whether the retrieved chunks answer a question? (run by hand)

For each question of bench/datasets/odoo-bilingual.jsonl, retrieves as the chain does (Korean
questions translated, hybrid, 400 tokens of chunks) and asks the model, greedy, for a yes or no:

- ``shared``: the default check (``chains.prompts.COVERAGE["documents"]``): the answer prompt up to the question,
  the English translation, "Do the documents above answer this question? Reply yes or no only.";
  then times the answer's first token, which reuses the evaluated prefix;
- ``independent``: a prompt of its own (English instructions, the English question, the same chunks):
  a second prefill of the chunks;
- ``titles``: the same question over the chunks' titles only;
- ``manual``: the shared prefix, with ``retrieval.coverage_question: manual``'s judge question, which
  says what a software manual does not hold (a company's people, contact details, figures,
  policies; general knowledge).

``--dataset`` takes another question set, e.g. ``datasets/sample-policies-ko.jsonl`` over the
bundled sample knowledge, whose HR pages state company policies.

Writes bench/results/coverage-check.json (merged per mode and language):
    python bench/coverage_check.py --config FILE --mode shared --language ko [--dataset FILE]
The config names the Odoo index and the model: `bench/odoo.yaml` (how to build its index is in it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import machine, merge
from langchain_core.output_parsers import StrOutputParser

from erp_chatbot.chains.prompts import (
    COVERAGE,
    answer_prompt,
    fit_context,
    format_context,
)
from erp_chatbot.chains.translation import build_translator, load_glossary
from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.evaluation import load_answer_cases
from erp_chatbot.models.llm import greedy_capped
from erp_chatbot.settings import Settings

DATASET = Path(__file__).resolve().parent / "datasets" / "odoo-bilingual.jsonl"
INDEPENDENT = [
    ("system", "You check whether documents answer a question. Reply yes or no."),
    (
        "human",
        "Documents:\n{context}\n\nQuestion: {question}\n\nDo the documents answer this question? Reply yes or no.",
    ),
]
TITLES = [
    ("system", "You check whether a user manual can answer a question. Reply yes or no."),
    (
        "human",
        "Manual sections found:\n{titles}\n\nQuestion: {question}\n\n"
        "Is the question about how to use the software features in these sections? Reply yes or no.",
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--mode", choices=["shared", "independent", "titles", "manual"], required=True)
    parser.add_argument("--language", choices=["en", "ko"], required=True)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    args = parser.parse_args()
    from langchain_core.prompts import ChatPromptTemplate

    settings = Settings.from_yaml(args.config)
    bot = ERPChatbot.from_settings(settings)
    llm = bot.llm
    glossary = load_glossary(settings.retrieval.translation_glossary)
    translator = build_translator(greedy_capped(llm, settings.llm.rewrite_max_new_tokens), glossary)
    judge = greedy_capped(llm, 2) | StrOutputParser()
    prompts = {"independent": ChatPromptTemplate.from_messages(INDEPENDENT)}
    prompts["titles"] = ChatPromptTemplate.from_messages(TITLES)
    rows = []
    for case in load_answer_cases(args.dataset):
        if case.language != args.language:
            continue
        question = case.question
        variants = translator.invoke(question)
        docs = bot.retriever.invoke(question, variants=variants) if variants else bot.retriever.invoke(question)
        docs = fit_context(docs, settings.llm.prompt_document_tokens, llm.get_num_tokens)
        context = format_context(docs)
        english = variants[0] if variants else question
        start = time.perf_counter()
        if args.mode in ("shared", "manual"):
            translation = f"\n(In English: {variants[0]})" if variants else ""
            prompt = COVERAGE["documents" if args.mode == "shared" else "manual"]
            verdict = (prompt[case.language] | judge).invoke(
                {"question": question, "context": context, "translation": translation}
            )
        else:
            titles = "\n".join(f"- {d.metadata.get('title')}" for d in docs)
            verdict = (prompts[args.mode] | judge).invoke({"question": english, "context": context, "titles": titles})
        row = {
            "id": case.id,
            "answerable": case.answerable,
            "query": english,
            "verdict": verdict.strip().lower(),
            "check_seconds": round(time.perf_counter() - start, 2),
        }
        if args.mode == "shared":
            start = time.perf_counter()
            for _ in (answer_prompt(case.language) | llm).stream({"question": question, "context": context}):
                break
            row["answer_first_token_after_check_seconds"] = round(time.perf_counter() - start, 2)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    write(args, rows)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    says_no = [r for r in rows if r["verdict"].startswith("no")]
    summary = {
        "answerable_declined": sum(r["answerable"] for r in says_no),
        "answerable": sum(r["answerable"] for r in rows),
        "unanswerable_declined": sum(not r["answerable"] for r in says_no),
        "unanswerable": sum(not r["answerable"] for r in rows),
        "p50_check_seconds": sorted(r["check_seconds"] for r in rows)[len(rows) // 2],
    }
    suffix = "" if args.dataset == DATASET else f"/{args.dataset.stem}"
    run = {"summary": summary, "questions": rows}
    path = merge("coverage-check", "runs", f"{args.mode}/{args.language}{suffix}", run, {"machine": machine()})
    print(summary, f"wrote {path}")


if __name__ == "__main__":
    main()
