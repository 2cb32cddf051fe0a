"""Shared query-encoder calls: a question's phrasings, and concurrent retrievals (run by hand).

On an index of the Odoo manual (`erp-chatbot ingest ../shared/data/odoo-docs-14.0/en`), hybrid
`ERPRetriever` with the query-vector LRU off, in one run:
- one retrieval of a Korean question and its English translation (what the demo does with Korean
  questions): both phrasings in one encoder call (`query_batch_size` 32, the default) vs one call
  each (`query_batch_size: 1`, before), each against the dense search alone (embed the question +
  raw faiss search), and a lone phrasing with and without the batcher;
- 16 threads retrieving at once vs one thread: retrievals/s, with and without shared calls.

Writes bench/results/query-batching.json.
    python bench/query_batching.py --index ~/.cache/erp-chatbot/odoo-index
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from common import dense_search, p50, timed, write

from erp_chatbot import Settings
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.models.embeddings import load_embeddings
from erp_chatbot.retrievers.erp import ERPRetriever

# A Korean question and an English translation of it, as the demo's translation step gives them.
PAIRS = [
    ("공급업체 청구서는 어떻게 승인하나요?", "How do I approve a vendor bill?"),
    ("고객에게 받은 돈은 어떻게 기록하나요?", "How do I record a payment received from a customer?"),
    ("새 창고는 어떻게 만드나요?", "How do I create a new warehouse?"),
    ("견적서 템플릿을 만들고 싶어요", "I want to create a quotation template"),
    ("결제 조건은 어디서 설정하나요?", "Where do I configure payment terms?"),
    ("세트 상품은 무엇인가요?", "What is a kit product?"),
    ("제품 변형은 어떻게 관리하나요?", "How do I manage product variants?"),
    ("일련번호를 추적하려면 어떻게 하나요?", "How do I track serial numbers?"),
    ("회계연도는 어떻게 마감하나요?", "How do I close a fiscal year?"),
    ("새 사용자를 초대하려면?", "How do I invite a new user?"),
    ("재고 위치는 어떻게 설정하나요?", "How do I set up stock locations?"),
    ("반품은 어떻게 처리하나요?", "How do I process a return?"),
    ("직원 휴가 신청은 어디서 하나요?", "Where do employees request time off?"),
    ("경비 보고서는 어떻게 제출하나요?", "How do I submit an expense report?"),
    ("구매 주문을 확인하는 방법은?", "How do I confirm a purchase order?"),
    ("은행 거래 내역을 맞추는 방법", "How to reconcile bank statements"),
]


def one_retrieval(shared: ERPRetriever, separate: ERPRetriever, repeat: int) -> dict:
    """Interleaved per question, so that every arm sees the same machine state."""
    arms = {
        "dense_search": lambda ko, en: dense_search(shared.embeddings, shared.index.store.index, ko, shared.k),
        "hybrid_one_phrasing_shared_calls": lambda ko, en: shared.invoke(ko),
        "hybrid_one_phrasing_one_call_each": lambda ko, en: separate.invoke(ko),
        "hybrid_translation_shared_calls": lambda ko, en: shared.invoke(ko, variants=[en]),
        "hybrid_translation_one_call_each": lambda ko, en: separate.invoke(ko, variants=[en]),
    }
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for ko, en in PAIRS:
        for name, arm in arms.items():
            samples[name] += timed(lambda arm=arm, ko=ko, en=en: arm(ko, en), repeat)
    base = p50(samples["dense_search"])
    return {f"{name}_p50_ms": p50(s) * 1000 for name, s in samples.items()} | {
        f"{name}_vs_dense": p50(s) / base for name, s in samples.items() if name != "dense_search"
    }


def throughput(retriever: ERPRetriever, clients: int, rounds: int) -> float:
    """Retrievals/s with ``clients`` threads, each asking every question (with its translation)."""
    questions = [pair for _ in range(rounds) for pair in PAIRS]
    per_client = [questions[i::clients] for i in range(clients)]

    def client(pairs: list[tuple[str, str]]) -> None:
        for ko, en in pairs:
            retriever.invoke(ko, variants=[en])

    threads = [threading.Thread(target=client, args=(pairs,)) for pairs in per_client]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(questions) / (time.perf_counter() - start)


def concurrency(shared: ERPRetriever, separate: ERPRetriever, rounds: int) -> dict:
    before = len(shared.batcher.batch_sizes)
    result = {
        "one_client_shared_calls_per_s": throughput(shared, 1, rounds),
        "one_client_one_call_each_per_s": throughput(separate, 1, rounds),
        "16_clients_one_call_each_per_s": throughput(separate, 16, rounds),
    }
    mark = len(shared.batcher.batch_sizes)
    result["16_clients_shared_calls_per_s"] = throughput(shared, 16, rounds)
    calls = list(shared.batcher.batch_sizes)[mark:]
    result["16_clients_shared_texts_per_call_mean"] = sum(calls) / len(calls)
    result["16_clients_shared_vs_one_call_each"] = (
        result["16_clients_shared_calls_per_s"] / result["16_clients_one_call_each_per_s"]
    )
    result["16_clients_vs_one_client_shared_calls"] = (
        result["16_clients_shared_calls_per_s"] / result["one_client_shared_calls_per_s"]
    )
    result["encoder_calls_in_one_client_runs"] = mark - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, required=True, help="an index of the Odoo manual")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=4, help="times each client set asks the questions")
    args = parser.parse_args()
    settings = Settings()
    embeddings = load_embeddings(settings, "cpu")
    index = index_store.load(args.index.expanduser(), embeddings)
    common = {"index": index, "embeddings": embeddings, "query_cache_size": 0, "score_threshold": -1.0}
    shared = ERPRetriever(**common)
    separate = ERPRetriever(**common, query_batch_size=1)
    for ko, en in PAIRS[:3]:  # warm-up
        shared.invoke(ko, variants=[en])
    result = {
        "index_chunks": index.store.index.ntotal,
        "one_retrieval": one_retrieval(shared, separate, args.repeat),
        "concurrency": concurrency(shared, separate, args.rounds),
    }
    print(write("query-batching", result))
    for section, figures in result.items():
        print(section, figures if not isinstance(figures, dict) else {k: round(v, 3) for k, v in figures.items()})


if __name__ == "__main__":
    main()
