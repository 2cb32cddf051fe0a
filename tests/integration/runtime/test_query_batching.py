"""Query embeddings shared between phrasings and concurrent retrievals, on the bundled e5 model."""

import threading
import time

import numpy as np
import pytest

from erp_chatbot.retrievers.erp import ERPRetriever
from erp_chatbot.runtime.query_batching import QueryEmbeddingBatcher
from tests.conftest import concurrently

QUESTIONS = [
    "How do I approve a vendor bill?",
    "재고 이동은 어디서 확인하나요?",
    "Where do I see stock moves?",
    "경비 영수증은 언제 필요한가요?",
    "How do I request leave?",
    "How is a customer invoice cancelled?",
    "구매 주문은 어떻게 승인하나요?",
    "When is an expense report due?",
]


def ranking(documents):
    return [doc.id for doc in documents], [doc.metadata["score"] for doc in documents]


def test_concurrent_retrievals_share_encoder_calls_and_keep_their_own_results(sample_index, embeddings):
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings, query_cache_size=0, score_threshold=-1)
    alone = [ranking(retriever.invoke(q)) for q in QUESTIONS]
    assert list(retriever.batcher.batch_sizes) == [1] * len(QUESTIONS)

    before = len(retriever.batcher.batch_sizes)
    together = concurrently(lambda q: ranking(retriever.invoke(q)), QUESTIONS)
    calls = list(retriever.batcher.batch_sizes)[before:]
    for (ids, scores), (alone_ids, alone_scores) in zip(together, alone, strict=True):
        assert ids == alone_ids  # a padded batch gives each query the vector it gets alone
        assert scores == pytest.approx(alone_scores, abs=1e-5)
    assert sum(calls) == len(QUESTIONS) and len(calls) < len(QUESTIONS)


def test_a_questions_phrasings_are_encoded_in_one_call(sample_index, embeddings):
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings, query_cache_size=0)
    question, translation = "재고 이동은 어디서 확인하나요?", "Where can I check stock moves?"
    found = retriever.invoke(question, variants=[translation])
    assert list(retriever.batcher.batch_sizes) == [2]
    assert found and found[0].metadata["source"].startswith("inventory/")
    vectors = retriever.batcher.embed([question, translation])
    alone = [embeddings.embed_query(question), embeddings.embed_query(translation)]
    np.testing.assert_allclose(vectors, alone, atol=1e-5)


def test_more_queries_than_a_call_holds_are_split(sample_index, embeddings):
    batcher = QueryEmbeddingBatcher(embeddings.embed_queries, batch_size=2)
    texts = ["stock moves", "vendor bills", "leave", "expenses", "payments"]
    vectors = batcher.embed(texts)
    assert list(batcher.batch_sizes) == [2, 2, 1] and batcher.embed([]) == []
    np.testing.assert_allclose(vectors, [embeddings.embed_query(t) for t in texts], atol=1e-5)
    one_each = ERPRetriever(index=sample_index, embeddings=embeddings, query_cache_size=0, query_batch_size=1)
    one_each.invoke("재고 이동은 어디서 확인하나요?", variants=["Where can I check stock moves?"])
    assert list(one_each.batcher.batch_sizes) == [1, 1]


def gated(encode, gate: threading.Event):
    """The real encoder, held at its first call until the test opens ``gate`` (so that the other
    callers are queued behind it), and failing on a poisoned text, as a broken input would."""

    def run(texts):
        gate.wait(timeout=30)
        if "poison" in texts:
            raise ValueError("cannot encode 'poison'")
        return encode(texts)

    return run


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the batcher never got there"
        time.sleep(0.001)


def queue_behind_first(batcher: QueryEmbeddingBatcher, requests: list[list[str]], gate: threading.Event):
    """The first request holds the encoder, the others queue behind it in order, then the gate opens."""

    def step(index):
        if index == len(requests):  # the opener, once every other request is queued
            wait_until(lambda: len(batcher._waiting) == len(requests) - 1)
            return gate.set()
        # the first call has begun and holds the encoder, and those before this one are queued
        wait_until(lambda: index == 0 or (batcher.batch_sizes and len(batcher._waiting) == index - 1))
        return batcher.embed(requests[index])

    return concurrently(step, list(range(len(requests) + 1)))[:-1]


def test_queued_queries_fill_calls_up_to_the_batch_size(embeddings):
    gate = threading.Event()
    batcher = QueryEmbeddingBatcher(gated(embeddings.embed_queries, gate), batch_size=4)
    requests = [["first"], ["a", "b"], ["c"], ["d", "e"], ["f"]]
    results = queue_behind_first(batcher, requests, gate)
    assert list(batcher.batch_sizes) == [1, 3, 3]  # [a b c] then [d e f]: [d e] did not fit beside [a b c]
    for texts, vectors in zip(requests, results, strict=True):
        np.testing.assert_allclose(vectors, [embeddings.embed_query(t) for t in texts], atol=1e-5)


def test_a_query_the_encoder_refuses_fails_alone(embeddings):
    gate = threading.Event()
    batcher = QueryEmbeddingBatcher(gated(embeddings.embed_queries, gate), batch_size=8)
    requests = [["first"], ["stock moves"], ["poison"], ["vendor bills"]]
    results = queue_behind_first(batcher, requests, gate)
    assert isinstance(results[2], ValueError) and "poison" in str(results[2])
    for index in (0, 1, 3):
        np.testing.assert_allclose(results[index], [embeddings.embed_query(requests[index][0])], atol=1e-5)
    assert list(batcher.batch_sizes) == [1, 3]  # the shared call failed, then each was retried alone


def test_batch_size_must_be_positive(embeddings):
    with pytest.raises(ValueError, match="batch_size"):
        QueryEmbeddingBatcher(embeddings.embed_queries, batch_size=0)
