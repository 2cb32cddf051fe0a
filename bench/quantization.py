"""CPU int8 (dynamic, Linear layers) vs float32 on the demo model, in one run (run by hand).

Tokens/s of greedy decoding on the same prompt, and answer agreement on a fixed question set over
the bundled sample knowledge (same retrieved context, greedy): identical answers, and answers that
contain the expected fact. Writes bench/results/quantization.json.   python bench/quantization.py
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

from common import write
from transformers import AutoModelForCausalLM, AutoTokenizer

from erp_chatbot import Settings
from erp_chatbot.chains.language import detect_language
from erp_chatbot.chains.prompts import answer_prompt, format_context
from erp_chatbot.cli import sample_knowledge_dir
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.ingest import ingest
from erp_chatbot.models.demo import demo_llm_path
from erp_chatbot.models.embeddings import load_embeddings
from erp_chatbot.models.quantize import quantize_dynamic_int8
from erp_chatbot.retrievers.erp import ERPRetriever

FACTS = [
    ("How do I approve a vendor bill?", "Accounting > Vendors > Bills"),
    ("재고 이동은 어디서 확인하나요?", "재고 > 보고 > 재고 이동"),
    ("How many days in advance must annual leave be requested?", "3"),
    ("경비 보고서는 경비 발생일로부터 며칠 이내에 제출해야 하나요?", "30"),
    ("Where do I create a request for quotation?", "Purchase > Orders > Requests for Quotation"),
    ("전자세금계산서 발행 기한은 언제인가요?", "10일"),
    ("Who approves purchase orders above 20,000,000 KRW?", "purchasing director"),
    ("A등급 품목은 얼마나 자주 실사하나요?", "매월"),
]
NEW_TOKENS = 96


def main() -> None:
    settings = Settings()
    path = demo_llm_path(settings.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    fp32 = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    int8 = quantize_dynamic_int8(copy.deepcopy(fp32))
    embeddings = load_embeddings(settings, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        ingest(
            sample_knowledge_dir(),
            Path(tmp),
            embeddings,
            embedding_model="multilingual-e5-small",
            chunk_size=800,
            chunk_overlap=100,
            progress=False,
        )
        retriever = ERPRetriever(index=index_store.load(Path(tmp), embeddings), embeddings=embeddings)
        prompts = [_prompt(tokenizer, retriever, q) for q, _ in FACTS]
    speed = {name: _tokens_per_s(model, tokenizer, prompts[0]) for name, model in (("fp32", fp32), ("int8", int8))}
    answers = {
        name: [_answer(model, tokenizer, p) for p in prompts] for name, model in (("fp32", fp32), ("int8", int8))
    }
    facts = {name: sum(fact in a for (_, fact), a in zip(FACTS, texts, strict=True)) for name, texts in answers.items()}
    result = {
        "tokens_per_s": speed,
        "int8_vs_fp32_speed": speed["int8"] / speed["fp32"],
        "identical_answers": sum(a == b for a, b in zip(answers["fp32"], answers["int8"], strict=True)),
        "answers_with_expected_fact": facts,
        "questions": len(FACTS),
        "answers": [
            {"question": q, "fp32": a, "int8": b}
            for (q, _), a, b in zip(FACTS, answers["fp32"], answers["int8"], strict=True)
        ],
    }
    print(write("quantization", result))
    print({k: v for k, v in result.items() if k != "answers"})


def _prompt(tokenizer, retriever: ERPRetriever, question: str) -> str:
    messages = answer_prompt(detect_language(question)).format_messages(
        question=question, context=format_context(retriever.invoke(question))
    )
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    chat = [{"role": roles[m.type], "content": m.content} for m in messages]
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def _tokens_per_s(model, tokenizer, prompt: str) -> float:
    inputs = tokenizer(prompt, return_tensors="pt")
    model.generate(**inputs, max_new_tokens=4, do_sample=False)
    start = time.perf_counter()
    model.generate(**inputs, max_new_tokens=64, min_new_tokens=64, do_sample=False)
    return 64 / (time.perf_counter() - start)


def _answer(model, tokenizer, prompt: str) -> str:
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.05)
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


if __name__ == "__main__":
    main()
