"""LoRA fine-tuning on question/answer pairs -> a new model version, registered inactive.

Data: JSONL, one ``{"question": ..., "answer": ...}`` per line, optionally with ``"context"`` (the
retrieved text the answer should be grounded in). A held-out split is evaluated before and after
training (mean loss and token accuracy on the answer tokens); the LoRA weights are merged into the
base model and the result is imported into the registry without being activated.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erp_chatbot.settings import Settings, TrainingSettings


class TrainingDataError(ValueError):
    """The training file is unusable; the message names the line."""


@dataclass(frozen=True)
class TrainReport:
    version: str
    base: str
    train_examples: int
    eval_examples: int
    before: dict[str, float]
    after: dict[str, float]
    device: str


def load_pairs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise TrainingDataError(f"{path} does not exist")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise TrainingDataError(f"{path}:{number}: not JSON ({error.msg})") from error
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) and row[k].strip() for k in ("question", "answer")
        ):
            raise TrainingDataError(f'{path}:{number}: needs non-empty "question" and "answer" strings')
        pairs.append(row)
    if len(pairs) < 2:
        raise TrainingDataError(f"{path}: at least 2 question/answer pairs are needed (one is held out)")
    return pairs


def split(pairs: list[dict[str, str]], settings: TrainingSettings) -> tuple[list[dict], list[dict]]:
    shuffled = pairs[:]
    random.Random(settings.seed).shuffle(shuffled)
    held_out = max(1, round(len(shuffled) * settings.eval_fraction))
    return shuffled[held_out:], shuffled[:held_out]


def encode(tokenizer: Any, pair: dict[str, str], max_length: int) -> tuple[list[int], list[int]]:
    """Input ids and labels; only the answer tokens are learned (the prompt is masked with -100)."""
    question = pair["question"] if not pair.get("context") else f"{pair['context']}\n\n{pair['question']}"
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    else:
        prompt = f"{question}\n"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(pair["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[-max_length:]
    labels = ([-100] * len(prompt_ids) + answer_ids)[-max_length:]
    return ids, labels


def evaluate(model: Any, tokenizer: Any, pairs: list[dict], max_length: int) -> dict[str, float]:
    """Mean loss and token accuracy over the answer tokens."""
    import torch

    model.eval()
    losses, correct, total = [], 0, 0
    with torch.no_grad():
        for pair in pairs:
            ids, labels = encode(tokenizer, pair, max_length)
            out = model(
                input_ids=torch.tensor([ids], device=model.device), labels=torch.tensor([labels], device=model.device)
            )
            losses.append(float(out.loss))
            predicted = out.logits[0, :-1].argmax(-1).tolist()
            for guess, target in zip(predicted, labels[1:], strict=True):
                if target != -100:
                    correct += guess == target
                    total += 1
    return {"loss": sum(losses) / len(losses), "token_accuracy": correct / max(total, 1)}


def train_lora(base: Path, pairs: list[dict], settings: TrainingSettings, device: str, out: Path) -> dict:
    """Fine-tune ``base`` with LoRA on ``pairs``, merge, save to ``out``; returns before/after scores."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype="float32").to(device)
    train, held_out = split(pairs, settings)
    before = evaluate(model, tokenizer, held_out, settings.max_length)
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=settings.learning_rate)
    examples = [encode(tokenizer, pair, settings.max_length) for pair in train]
    for _ in range(settings.epochs):
        model.train()
        random.Random(settings.seed).shuffle(examples)
        for start in range(0, len(examples), settings.batch_size):
            loss = _batch_loss(model, examples[start : start + settings.batch_size], tokenizer.pad_token_id)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    merged = model.merge_and_unload()
    after = evaluate(merged, tokenizer, held_out, settings.max_length)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"before": before, "after": after, "train": len(train), "eval": len(held_out)}


def _batch_loss(model: Any, batch: list[tuple[list[int], list[int]]], pad_id: int) -> Any:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([i + [pad_id] * (width - len(i)) for i, _ in batch], device=model.device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=model.device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=model.device)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def run_training(settings: Settings, data: Path, note: str = "") -> TrainReport:
    """Train on the active model (or the configured/demo one) and register the result, inactive."""
    from erp_chatbot.devices import detect_gpus
    from erp_chatbot.models.llm import hf_model_path
    from erp_chatbot.models.registry import ModelRegistry

    pairs = load_pairs(data)
    base = hf_model_path(settings)
    gpu_ids, gpus = settings.resources.training.gpu_ids, detect_gpus()
    device = f"cuda:{gpu_ids[0]}" if gpu_ids and gpu_ids[0] < gpus.count else "cpu"
    registry = ModelRegistry(settings.registry_dir, settings.backup_dir, settings.model_versions)
    if registry.state().active is None:  # record the base first, so the new version is not the active one
        registry.import_folder(base, note="base model")
    with tempfile.TemporaryDirectory(dir=settings.registry_dir, prefix=".train-") as tmp:
        scores = train_lora(base, pairs, settings.training, device, Path(tmp) / "merged")
        version = registry.import_folder(
            Path(tmp) / "merged", kind="lora", note=note or f"LoRA on {data.name} from {base.name}"
        )
    return TrainReport(
        version.id, str(base), scores["train"], scores["eval"], scores["before"], scores["after"], device
    )
