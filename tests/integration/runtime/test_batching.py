"""Request batching on the tiny local GPT-2: shared model calls, separate results, errors, streams."""

import asyncio
import time

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from erp_chatbot import ERPChatbot
from erp_chatbot.runtime.batching import BatchedHuggingFacePipeline
from tests.conftest import concurrently, tiny_settings

PROMPTS = [f"user: How do I approve vendor bill number {i} in Accounting?\nassistant:" for i in range(8)]


@pytest.fixture(scope="module")
def batched(tiny_lm_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, return_full_text=False)
    return BatchedHuggingFacePipeline(
        pipeline=pipe,
        generation={"max_new_tokens": 6, "do_sample": False},
        batch_size=4,
        max_concurrency=2,
        max_wait_ms=50,
    )


def test_concurrent_calls_share_batches_and_keep_their_own_results(batched):
    alone = [batched.invoke(p) for p in PROMPTS[:3]]
    before = len(batched.batcher.batch_sizes)
    together = concurrently(batched.invoke, PROMPTS)
    sizes = list(batched.batcher.batch_sizes)[before:]
    assert sum(sizes) == len(PROMPTS) and max(sizes) > 1 and max(sizes) <= 4
    assert all(isinstance(t, str) and t for t in together)
    assert together[:3] == alone  # greedy: batching with left padding changes no answer


def test_one_bad_request_fails_alone(batched):
    too_long = "user: " + "bill " * 5000 + "\nassistant:"  # longer than the model's 4096 positions
    results = concurrently(batched.invoke, [PROMPTS[0], too_long, PROMPTS[1]])
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert isinstance(results[1], Exception)


def test_streams_stay_separate(batched):
    expected = [batched.invoke(p) for p in PROMPTS[:4]]
    streamed = concurrently(lambda p: list(batched.stream(p)), PROMPTS[:4])
    assert ["".join(chunks) for chunks in streamed] == expected
    assert all(len(chunks) >= 3 for chunks in streamed)


def test_bound_settings_form_their_own_batches(batched):
    short = batched.bind(pipeline_kwargs={"max_new_tokens": 2})
    results = concurrently(lambda args: args[0].invoke(args[1]), [(batched, PROMPTS[0]), (short, PROMPTS[1])] * 2)
    assert all(isinstance(r, str) for r in results)
    assert len(batched.invoke(PROMPTS[1]).split()) > len(short.invoke(PROMPTS[1]).split())


async def test_chain_abatch_is_batched(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir, batching={"max_wait_ms": 200})
    bot = ERPChatbot.from_settings(settings)
    questions = [
        "How do I count stock?",
        "How do I request leave?",
        "How do I issue an invoice?",
        "경비는 어떻게 청구하나요?",
        "재고 이동은 어디서 보나요?",
        "구매 주문은 어떻게 확정하나요?",
    ]
    configs = [{"configurable": {"session_id": f"batch-{i}"}} for i in range(len(questions))]
    outputs = await bot.as_runnable().abatch([{"question": q} for q in questions], configs)
    for config in configs:
        bot.history.clear(config["configurable"]["session_id"])
    assert all(o["answer"] for o in outputs)
    assert max(bot.llm.llm.batcher.batch_sizes) > 1


def test_a_staggered_burst_fills_whole_batches(tiny_lm_dir):
    """Clients of one burst reach the batcher spread over more than one wait (executor threads, the
    chat template, a busy GIL): as long as each arrives within the wait of the previous one, they
    share a batch. A fixed deadline from the first arrival split such a burst into 3 + 3 + 2."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, return_full_text=False)
    batched = BatchedHuggingFacePipeline(
        pipeline=pipe, generation={"max_new_tokens": 2, "do_sample": False}, batch_size=4, max_wait_ms=300
    )

    def arrive_and_ask(index: int) -> str:
        time.sleep(0.12 * index)  # 8 arrivals over 0.84 s, each 0.12 s after the one before
        return batched.invoke(PROMPTS[index])

    results = concurrently(arrive_and_ask, list(range(8)))
    assert all(isinstance(r, str) for r in results)
    assert list(batched.batcher.batch_sizes) == [4, 4]


async def test_async_requests_hold_no_thread_so_a_burst_fills_one_batch(tiny_lm_dir):
    """16 concurrent ``ainvoke`` calls on the chat model form one batch of 16. Waiting in a worker
    thread capped them at the event loop's default executor (CPU count + 4 threads: 6 here)."""
    from langchain_core.messages import HumanMessage

    from erp_chatbot.models.llm import LocalChatHuggingFace

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, return_full_text=False)
    batched = BatchedHuggingFacePipeline(
        pipeline=pipe, generation={"max_new_tokens": 4, "do_sample": False}, batch_size=16, max_wait_ms=300
    )
    chat = LocalChatHuggingFace(llm=batched, tokenizer=tokenizer, model_id=str(tiny_lm_dir))
    questions = [f"How do I approve vendor bill number {i} in Accounting?" for i in range(16)]

    replies = await asyncio.gather(*(chat.ainvoke([HumanMessage(q)]) for q in questions))
    streamed = [chunk.content async for chunk in chat.astream([HumanMessage(questions[0])])]

    assert batched.batcher.batch_sizes[0] == 16
    assert all(isinstance(r.content, str) and r.content for r in replies)
    assert len(streamed) >= 2 and "".join(streamed) == replies[0].content  # greedy, same prompt
