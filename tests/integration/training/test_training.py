"""LoRA fine-tuning end to end on the tiny local GPT-2 (CPU), through the `erp-chatbot train` command."""

import json
import subprocess
import sys

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from erp_chatbot.training.lora import TrainingDataError, load_pairs

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)

PAIRS = [
    ("How do I approve a vendor bill?", "Open Accounting > Vendors > Bills and click Approve."),
    ("Where are stock moves?", "Open Inventory > Reporting > Stock Moves."),
    ("How do I request leave?", "Open Time Off > My Time Off > New Request."),
    ("재고 이동은 어디서 확인하나요?", "재고 > 보고 > 재고 이동 메뉴를 엽니다."),
    ("How do I submit expenses?", "Open Expenses > My Expenses > New and attach the receipt."),
    ("How do I issue a credit note?", "Open the posted invoice and click Add Credit Note."),
    ("Who approves bills above 5,000,000 KRW?", "The finance manager approves them."),
    ("How do I count stock?", "Open Inventory > Operations > Physical Inventory."),
    ("How do I confirm an order?", "Click Confirm Order on the request for quotation."),
    ("연차는 며칠 전에 신청하나요?", "연차는 최소 3영업일 전에 신청합니다."),
]


def greedy(path, question: str) -> str:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1] :])


def test_train_registers_an_inactive_version_that_answers_differently(tmp_path, tiny_lm_dir):
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in PAIRS))
    config = tmp_path / "erp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "llm": {"model_path": str(tiny_lm_dir)},
                "model_versions": {"min_free_disk_gb": 0},
                "training": {"learning_rate": 0.01, "epochs": 8, "lora_r": 16},
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from erp_chatbot.cli import main; main()",
            "train",
            "--data",
            str(data),
            "--config",
            str(config),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["train_examples"] == 8 and report["eval_examples"] == 2
    assert report["after"]["loss"] < report["before"]["loss"]
    registry = json.loads((tmp_path / "home" / "registry" / "registry.json").read_text())
    assert registry["active"] == "v1" and registry["versions"]["v1"]["note"] == "base model"
    assert report["version"] == "v2" and registry["versions"]["v2"]["kind"] == "lora"
    trained = tmp_path / "home" / "registry" / "versions" / "v2"
    changed = [greedy(trained, q) != greedy(tiny_lm_dir, q) for q, _ in PAIRS]
    assert sum(changed) >= len(PAIRS) // 2


def test_bad_training_files_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\n{"question": "only"}\n')
    with pytest.raises(TrainingDataError, match=r"bad\.jsonl:2"):
        load_pairs(bad)
    bad.write_text("not json\n")
    with pytest.raises(TrainingDataError, match=r"bad\.jsonl:1: not JSON"):
        load_pairs(bad)
    bad.write_text('{"question": "a", "answer": "b"}\n')
    with pytest.raises(TrainingDataError, match="at least 2"):
        load_pairs(bad)
