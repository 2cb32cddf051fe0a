"""Serving under load, each figure against its baseline in the same run (run by hand).

- cache hit over HTTP (/erp/invoke) vs a bare FastAPI endpoint returning the same JSON, and vs a miss;
  the hit answered in front of LangServe, and through LangServe and the chain
- 16 concurrent clients vs one client (answers/s), and vs the pipeline run offline on a batch of 16
- one full chat turn vs model.generate on the same final prompt; time to the first streamed token
- peak RSS of the process while serving the 16 clients

Uses the demo model (greedy, --max-new-tokens, default 48) and the bundled sample knowledge.
Writes bench/results/runtime.json.   python bench/runtime.py [--max-new-tokens 48] [--cpu-int8]
With --demo, only the load part, against `erp-chatbot serve --demo` (the demo profile's models and
sample knowledge; the offline ceiling needs the transformers pipeline, so it is left out):
bench/results/runtime-demo.json. With --only-cache, only the cache figures: bench/results/runtime-cache.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from common import p50, timed, write
from fastapi import FastAPI

from erp_chatbot import ERPChatbot, Settings
from erp_chatbot.chains.prompts import answer_prompt, format_context
from erp_chatbot.cli import sample_knowledge_dir
from erp_chatbot.knowledge.ingest import ingest
from erp_chatbot.server.background import running_server

QUESTIONS = [
    "How do I approve a vendor bill?",
    "재고 이동은 어디서 확인하나요?",
    "How do I request annual leave?",
    "경비 보고서는 언제까지 제출하나요?",
    "How do I issue a credit note?",
    "구매 주문서는 누가 승인하나요?",
    "How often are class A products counted?",
    "전자세금계산서는 언제까지 발행하나요?",
    "How do I create a request for quotation?",
    "연차는 며칠 전에 신청해야 하나요?",
    "Who may apply inventory adjustments above 1,000,000 KRW?",
    "청구서를 반려하려면 어떻게 하나요?",
    "Where do I see the traceability of a lot?",
    "선금 송장은 어떻게 만드나요?",
    "How are expense reports reimbursed?",
    "총괄 구매 계약은 어떻게 사용하나요?",
]


def build(args: argparse.Namespace, index_dir: Path, cache: bool) -> ERPChatbot:
    settings = Settings(
        llm={
            "max_new_tokens": args.max_new_tokens,
            "temperature": 0,
            "cpu_quantization": "dynamic-int8" if args.cpu_int8 else "none",
        },
        knowledge={"index_dir": index_dir},
        cache={"enabled": cache, "redis_prefix": f"bench:{uuid.uuid4().hex}:"},
    )
    return ERPChatbot.from_settings(settings)


def invoke(url: str, question: str, client: httpx.Client) -> dict:
    body = {"input": {"question": question}, "config": {"configurable": {"session_id": f"bench-{uuid.uuid4().hex}"}}}
    response = client.post(f"{url}/erp/invoke", json=body, timeout=900)
    response.raise_for_status()
    return response.json()


def cache_over_http(bot: ERPChatbot) -> dict:
    """A cache hit answered in front of LangServe, one through LangServe and the chain (the server
    as it was before, `server.cached_first_turns: false`), and a bare endpoint: each p50 of 200."""
    server = bot.settings.server.model_copy(update={"cached_first_turns": False})
    through_chain = _app(bot, bot.settings.model_copy(update={"server": server}))
    with running_server(through_chain) as url, httpx.Client() as client:
        miss = timed(lambda: invoke(url, QUESTIONS[0], client), 1)[0]
        hit_json = invoke(url, QUESTIONS[0], client)
        assert hit_json["output"]["cached"], "the second ask was not a cache hit"
        chain_hits = timed(lambda: invoke(url, QUESTIONS[0], client), 200)
    with running_server(_app(bot)) as url, httpx.Client() as client:
        front = invoke(url, QUESTIONS[0], client)["output"]
        assert front["cached"] and front["retrieval_seconds"] == 0.0, "the hit was not answered before the chain"
        hits = timed(lambda: invoke(url, QUESTIONS[0], client), 200)
    bare = FastAPI()
    bare.post("/erp/invoke")(lambda: hit_json)
    with running_server(bare) as bare_url, httpx.Client() as client:
        bare_times = timed(lambda: client.post(f"{bare_url}/erp/invoke", json={}).json(), 200)
    return {
        "hit_p50_ms": p50(hits) * 1000,
        "hit_through_chain_p50_ms": p50(chain_hits) * 1000,
        "bare_fastapi_p50_ms": p50(bare_times) * 1000,
        "miss_ms": miss * 1000,
        "hit_vs_bare": p50(hits) / p50(bare_times),
        "hit_through_chain_vs_bare": p50(chain_hits) / p50(bare_times),
        "miss_vs_hit": miss / p50(hits),
    }


def _app(bot: ERPChatbot, settings: Settings | None = None) -> FastAPI:
    from erp_chatbot.server.app import create_app

    return create_app(bot, settings)


def concurrency(bot: ERPChatbot, args: argparse.Namespace, index_dir: Path) -> dict:
    """The app in its own process (`erp-chatbot serve`), so its RSS is the server's alone."""
    env = {
        "ERP_LLM__CPU_QUANTIZATION": "dynamic-int8" if args.cpu_int8 else "none",
        "ERP_KNOWLEDGE__INDEX_DIR": str(index_dir),
    }
    served = serve_and_load([], env, args)
    prompts = [_final_prompt(bot, q) for q in QUESTIONS]
    pipe = bot.llm.llm.pipeline
    start = time.perf_counter()
    pipe(prompts, batch_size=16, **bot.llm.llm.generation)
    offline = len(prompts) / (time.perf_counter() - start)
    return {
        **served,
        "offline_batch16_answers_per_s": offline,
        "sixteen_vs_offline": served["sixteen_clients_answers_per_s"] / offline,
        "offline_vs_one": offline / served["one_client_answers_per_s"],
    }


def serve_and_load(serve_args: list[str], env: dict[str, str], args: argparse.Namespace) -> dict:
    """One client asking 4 questions in turn, then 16 clients at once, against `erp-chatbot serve`
    in its own process (greedy, no response cache); its peak RSS meanwhile."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "ERP_LLM__MAX_NEW_TOKENS": str(args.max_new_tokens),
        "ERP_LLM__TEMPERATURE": "0",
        "ERP_CACHE__ENABLED": "false",
        "ERP_SERVER__REQUEST_TIMEOUT_SECONDS": "1800",  # the 16th client waits for 15 answers first
        **env,
    }
    server = subprocess.Popen(
        ["erp-chatbot", "serve", *serve_args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        process, peak, done = psutil.Process(server.pid), [0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
        with httpx.Client() as client:
            start = time.perf_counter()
            for question in QUESTIONS[:4]:
                invoke(url, question, client)
            one_client = 4 / (time.perf_counter() - start)

        async def many() -> float:
            async with httpx.AsyncClient(timeout=1800) as client:

                async def ask(question: str) -> None:
                    body = {
                        "input": {"question": question},
                        "config": {"configurable": {"session_id": f"bench-{uuid.uuid4().hex}"}},
                    }
                    (await client.post(f"{url}/erp/invoke", json=body)).raise_for_status()

                start = time.perf_counter()
                await asyncio.gather(*(ask(q) for q in QUESTIONS))
                return len(QUESTIONS) / (time.perf_counter() - start)

        sixteen = asyncio.run(many())
        done.set()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "one_client_answers_per_s": one_client,
        "sixteen_clients_answers_per_s": sixteen,
        "sixteen_vs_one": sixteen / one_client,
        "server_peak_rss_gib": peak[0] / 2**30,
    }


def _final_prompt(bot: ERPChatbot, question: str) -> str:
    from erp_chatbot.chains.language import detect_language

    documents = bot.retriever.invoke(question)
    messages = answer_prompt(detect_language(question)).format_messages(
        question=question, context=format_context(documents)
    )
    return bot.llm._to_chat_prompt(messages)


def chain_overhead(bot: ERPChatbot) -> dict:
    question = QUESTIONS[1]
    prompt = _final_prompt(bot, question)
    pipe = bot.llm.llm.pipeline
    inputs = pipe.tokenizer(prompt, return_tensors="pt")
    generation = bot.llm.llm.generation
    raw = timed(lambda: pipe.model.generate(**inputs, **generation, pad_token_id=pipe.tokenizer.pad_token_id), 3)
    turns = timed(lambda: bot.ask(question), 3)
    first_tokens = []
    for _ in range(3):
        start, first = time.perf_counter(), None
        for _chunk in bot.stream(question):  # read to the end: generation cannot be cancelled
            first = first or time.perf_counter() - start
        first_tokens.append(first)
    return {
        "chat_turn_s": p50(turns),
        "generate_s": p50(raw),
        "turn_vs_generate": p50(turns) / p50(raw),
        "first_token_s": p50(first_tokens),
        "retrieved_chunks": len(bot.retriever.invoke(question)),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--cpu-int8", action="store_true")
    parser.add_argument("--only-cache", action="store_true", help="only the cache figures: results/runtime-cache.json")
    parser.add_argument(
        "--demo", action="store_true", help="only `erp-chatbot serve --demo` (its profile's models) under load"
    )
    parser.add_argument("--variant", default="", help="--demo: what this run's configuration is, for the results")
    args = parser.parse_args()
    if args.demo:
        from erp_chatbot.cli import load_settings

        llm = load_settings(None, demo=True).llm
        served = serve_and_load(["--demo"], {}, args)
        result = {
            "settings": {**vars(args), "profile": "demo"},
            "llama_cpp": {"prompt_cache_mb": llm.prompt_cache_mb, "prompt_batch_tokens": llm.prompt_batch_tokens},
            "concurrency": served,
            "variant": args.variant,
        }
        print(write("runtime-demo", result))
        print(result)
        return
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        from erp_chatbot.models.embeddings import load_embeddings

        ingest(
            sample_knowledge_dir(),
            index_dir,
            load_embeddings(Settings(), "cpu"),
            embedding_model="multilingual-e5-small",
            chunk_size=800,
            chunk_overlap=100,
            progress=False,
        )
        cached_bot = build(args, index_dir, cache=True)
        result = {"settings": vars(args), "cache": cache_over_http(cached_bot)}
        del cached_bot
        if args.only_cache:
            print(write("runtime-cache", result))
            print(result)
            return
        bot = build(args, index_dir, cache=False)
        result["chain"] = chain_overhead(bot)
        result["concurrency"] = concurrency(bot, args, index_dir)
    name = "runtime-int8" if args.cpu_int8 else "runtime"
    print(write(name, result))
    for section, figures in result.items():
        print(section, {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    main()
