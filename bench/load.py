"""Load test: 32 clients for 5 minutes against the app on loopback, then schemathesis (run by hand).

Starts ``erp-chatbot serve`` in its own process with API keys (two users with different roles), the
demo model (dynamic int8, greedy, --max-new-tokens) and the bundled sample knowledge. Each client
keeps its own sessions (a new one every few turns) and mixes cached questions, uncached ones (a new
ticket number each time) and streamed ones. Afterwards every session's history in Redis is checked
against the turns that were answered: lost messages are counted, and so are turns stored apart.
Then schemathesis fuzzes every operation of the running app's OpenAPI schema.

Writes bench/results/load.json.   python bench/load.py [--clients 32] [--seconds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import redis
import yaml
from common import write
from runtime import QUESTIONS

from erp_chatbot.server.auth import APIKeys

REDIS_URL = "redis://127.0.0.1:6379/0"
CACHED = QUESTIONS[:6]  # the runtime benchmark's questions, known to the sample knowledge
FRESH = ["How do I approve vendor bill {n}?", "재고 이동 {n}번은 어디서 확인하나요?", "How is ticket {n} reimbursed?"]
TURNS_PER_SESSION = 5  # below the 10-turn window, so nothing is trimmed


def start_server(home: Path, port: int, args: argparse.Namespace, prefix: str) -> tuple[subprocess.Popen, dict]:
    keys = APIKeys(home / "keys.yaml")
    users = {"fin": keys.add("fin", ["finance", "purchasing"]), "ops": keys.add("ops", ["warehouse", "employee"])}
    config = home / "erp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "llm": {"max_new_tokens": args.max_new_tokens, "temperature": 0, "cpu_quantization": "dynamic-int8"},
                "memory": {"redis_url": REDIS_URL, "key_prefix": f"{prefix}context:", "owner_prefix": f"{prefix}own:"},
                "cache": {"redis_prefix": f"{prefix}answer:"},
                "access": {"api_keys_file": str(home / "keys.yaml")},
                "knowledge": {"index_dir": str(home / "index")},
                # 16 clients share each key, and cached answers take milliseconds: the per-key limit
                # (tests/integration/server/test_access_control.py tests it) would answer most of them 429
                "server": {"rate_limit_per_minute": None},
            }
        )
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from erp_chatbot.cli import main; main()",
            "serve",
            "--demo",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server, users
        except httpx.HTTPError:
            time.sleep(1)
    server.kill()
    raise RuntimeError("the app did not become healthy within 10 minutes")


class Load:
    def __init__(self, url: str, users: dict[str, str], seconds: float) -> None:
        self.url, self.users, self.seconds = url, users, seconds
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.turns: dict[str, list[str]] = defaultdict(list)  # session -> questions answered, in order sent
        self.counter = 0
        self.elapsed = 0.0

    async def client(self, number: int, http: httpx.AsyncClient) -> None:
        key = self.users["fin" if number % 2 else "ops"]
        rng = random.Random(number)
        end = time.monotonic() + self.seconds
        session, used = f"c{number}-{uuid.uuid4().hex[:8]}", 0
        while time.monotonic() < end:
            if used == TURNS_PER_SESSION:
                session, used = f"c{number}-{uuid.uuid4().hex[:8]}", 0
            kind = rng.choices(["cached", "uncached", "stream"], weights=[6, 2, 2])[0]
            self.counter += 1
            question = rng.choice(CACHED) if kind == "cached" else rng.choice(FRESH).format(n=self.counter)
            if await self.turn(http, key, session, question, kind):
                self.turns[session].append(question)
            used += 1

    async def turn(self, http: httpx.AsyncClient, key: str, session: str, question: str, kind: str) -> bool:
        body = {"input": {"question": question}, "config": {"configurable": {"session_id": session}}}
        headers = {"Authorization": f"Bearer {key}"}
        start = time.perf_counter()
        try:
            if kind == "stream":
                async with http.stream("POST", f"{self.url}/erp/stream", json=body, headers=headers) as response:
                    text = "".join([chunk async for chunk in response.aiter_text()])
                    ok = response.status_code == 200 and "event: end" in text and "event: error" not in text
            else:
                response = await http.post(f"{self.url}/erp/invoke", json=body, headers=headers)
                ok = response.status_code == 200 and bool(response.json()["output"]["answer"])
                kind = "hit" if ok and response.json()["output"]["cached"] else "miss"  # follow-ups condense first
        except httpx.HTTPError as error:
            self.errors.append(f"{kind}: {type(error).__name__}: {error}")
            return False
        if not ok:
            self.errors.append(f"{kind}: HTTP {response.status_code}")
            return False
        self.latencies[kind].append(time.perf_counter() - start)
        return True

    async def run(self, clients: int) -> None:
        limits = httpx.Limits(max_connections=clients + 4)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            for question in CACHED:  # warm the cache, so "cached" requests are hits
                await self.turn(http, self.users["fin"], f"warm-{uuid.uuid4().hex[:8]}", question, "uncached")
            self.latencies.clear()
            start = time.monotonic()
            await asyncio.gather(*(self.client(n, http) for n in range(clients)))
            self.elapsed = time.monotonic() - start


def lost_history(load: Load, prefix: str) -> dict[str, int]:
    """Messages missing from Redis, and turns whose question and answer are not stored together."""
    client = redis.Redis.from_url(REDIS_URL)
    lost = apart = 0
    for session, questions in load.turns.items():
        stored = [json.loads(item) for item in reversed(client.lrange(f"{prefix}context:{session}", 0, -1))]
        lost += max(0, 2 * len(questions) - len(stored))
        pairs = list(zip(stored[::2], stored[1::2], strict=False))
        apart += sum(1 for human, ai in pairs if (human["type"], ai["type"]) != ("human", "ai"))
        if sorted(h["data"]["content"] for h, _ in pairs) != sorted(questions):
            apart += 1
    return {"lost_messages": lost, "turns_not_stored_together": apart, "sessions": len(load.turns)}


def run_schemathesis(url: str, key: str, examples: int) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers={"Authorization": f"Bearer {key}"})
    cases, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            nonlocal cases
            response = case.call(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
            cases += 1
            case.validate_response(
                response, checks=[schemathesis.checks.not_a_server_error, response_schema_conformance]
            )

        try:
            fuzz()
        except Exception as error:  # recorded, not raised: the result file says what failed
            failures.append(f"{operation.label}: {str(error)[:500]}")
    return {"cases": cases, "operations": len(list(schema.get_all_operations())), "failures": failures}


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--schemathesis-examples", type=int, default=25)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    prefix = f"load-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as tmp:
        server, users = start_server(Path(tmp), args.port, args, prefix)
        url = f"http://127.0.0.1:{args.port}"
        try:
            load = Load(url, users, args.seconds)
            asyncio.run(load.run(args.clients))
            history = lost_history(load, prefix)
            fuzz = run_schemathesis(url, users["fin"], args.schemathesis_examples)
        finally:
            server.terminate()
            server.wait(timeout=60)
    answered = sum(len(v) for v in load.latencies.values())
    result = {
        "setup": {
            **vars(args),
            "model": "demo Qwen2.5-Coder-0.5B, dynamic int8, greedy",
            "mix": "6 known questions : 2 new questions : 2 streamed new questions",
        },
        "seconds": round(load.elapsed, 1),
        "requests_sent": answered + len(load.errors),
        "answered": answered,
        "errors": len(load.errors),
        "error_samples": load.errors[:10],
        **history,
        "by_kind": {
            kind: {"count": len(samples), "p50_s": percentile(samples, 0.5), "p95_s": percentile(samples, 0.95)}
            for kind, samples in sorted(load.latencies.items())
        },
        "all": {
            "p50_s": percentile([s for v in load.latencies.values() for s in v], 0.5),
            "p95_s": percentile([s for v in load.latencies.values() for s in v], 0.95),
        },
        "schemathesis": fuzz,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {write('load', result)}")


if __name__ == "__main__":
    main()
