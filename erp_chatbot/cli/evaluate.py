"""``erp-chatbot eval``: retrieval on BEIR sets, whole answers on question sets (``evaluation``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from erp_chatbot.cli.options import (
    ConfigOption,
    DemoOption,
    JsonOption,
    VerboseOption,
    comma_list,
    ensure_demo_index,
    load_settings,
    setup_logging,
)

app = typer.Typer(help="Evaluate retrieval (BEIR sets) and whole answers (JSONL); scores are recorded for /metrics.")

ANSWER_METRICS = (
    "facts_found",
    "facts_half",
    "gold_cited",
    "in_language",
    "lead_in_language",
    "answerable_not_declined",
    "unanswerable_declined",
    "grounded",
    "nothing_invented",
    "p50_seconds",
    "p50_first_token_seconds",
)


@app.command("retrieval")
def retrieval(
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")],
    modes: Annotated[str, typer.Option(help="comma-separated: dense, sparse, hybrid")] = "dense,sparse,hybrid",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """nDCG@10, recall@5, MRR@10 (ranx) and latency per query of the retriever in each mode.

    The corpus is indexed in memory (one chunk per document) with the configured embedding model;
    its vectors are kept under the home folder and reused while the corpus and the model are the same;
    fusion settings come from the retrieval settings. Each mode's nDCG@10 is recorded for /metrics.
    """
    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.evaluation import MODES, evaluate_retrieval, index_corpus, load_beir, record_score
    from erp_chatbot.models.embeddings import load_embeddings

    setup_logging(verbose)
    chosen = comma_list(modes) or []
    if not chosen or set(chosen) - set(MODES):
        raise typer.BadParameter(f"--modes takes a comma-separated list of {', '.join(MODES)}; got {modes!r}")
    settings = load_settings(config, demo=False)
    data = load_beir(dataset)
    embeddings = load_embeddings(settings, plan_devices(settings, detect_gpus()).embeddings_device)
    if not as_json:
        typer.echo(f"indexing {len(data.corpus)} documents...", err=True)
    index = index_corpus(embeddings, data, settings.embeddings.batch_size, settings.evaluation_vectors_dir)
    reports = evaluate_retrieval(index, embeddings, data, settings.retrieval, chosen)
    for report in reports:
        name = f"retrieval-ndcg10:{dataset.resolve().name}:{report.mode}"
        record_score(settings.evaluations_file, name, report.scores["ndcg@10"])
    if as_json:
        summary = {"dataset": str(dataset), "queries": len(data.queries), "documents": len(data.corpus)}
        typer.echo(json.dumps({**summary, "modes": [r.as_dict() for r in reports]}, indent=2))
        return
    typer.echo(f"{'mode':<8} {'nDCG@10':>8} {'recall@5':>8} {'MRR@10':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for r in reports:
        metrics = " ".join(f"{r.scores[name]:>8.3f}" for name in ("ndcg@10", "recall@5", "mrr@10"))
        typer.echo(f"{r.mode:<8} {metrics} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f}")
    typer.echo(f"{len(data.queries)} queries over {len(data.corpus)} documents")


@app.command("answers")
def answers(
    dataset: Annotated[Path, typer.Option("--dataset", help="JSONL: question, gold, facts, answerable, language")],
    config: ConfigOption = None,
    demo: DemoOption = False,
    roles: Annotated[str | None, typer.Option(help="comma-separated roles to answer as")] = None,
    oracle: Annotated[
        bool, typer.Option(help="answer from the 3 chunks of the gold pages closest to each question")
    ] = False,
    split: Annotated[str | None, typer.Option(help="only the questions of this split (dev or test)")] = None,
    temperature: Annotated[float, typer.Option(help="decoding temperature (0 = greedy, reproducible)")] = 0.0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the whole chain on each question, in a new session, without the response cache:
    expected facts found, gold pages cited, answer language, declines, grounding, seconds; per language.
    """
    from tqdm.auto import tqdm

    from erp_chatbot.chatbot import ERPChatbot
    from erp_chatbot.evaluation import (
        OracleRetriever,
        answering_settings,
        evaluate_answers,
        load_answer_cases,
        record_score,
    )

    setup_logging(verbose)
    cases = load_answer_cases(dataset, split)
    settings = answering_settings(load_settings(config, demo), temperature)
    ensure_demo_index(settings, demo)
    bot = ERPChatbot.from_settings(settings)
    if oracle:
        gold = {case.question: case.gold for case in cases}
        bot.use_retriever(OracleRetriever(index=bot.index, embeddings=bot.embeddings, gold=gold))
    with tqdm(total=len(cases), desc="answering", unit="question", disable=as_json) as progress:
        report = evaluate_answers(lambda q: _counted(bot.ask(q, roles=comma_list(roles)), progress), cases)
    name = f"answers-facts:{dataset.stem}{f':{split}' if split else ''}{':oracle' if oracle else ''}"
    if report["facts_found"] is not None:
        record_score(settings.evaluations_file, name, report["facts_found"])
    if as_json:
        output = {"dataset": str(dataset), "split": split, "oracle": oracle, **report}
        typer.echo(json.dumps(output, indent=2, ensure_ascii=False))
        return
    columns = {"all": report, **report["by_language"]}
    typer.echo(f"{'':<26}" + "".join(f"{column:>8}" for column in columns))
    for metric in ANSWER_METRICS:
        typer.echo(f"{metric:<26}" + "".join(f"{_cell(summary[metric]):>8}" for summary in columns.values()))


def _counted(answer, progress):
    progress.update()
    return answer


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
