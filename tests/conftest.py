"""Shared fixtures: real Redis, real FAISS, the bundled e5 model and a tiny local GPT-2.

Heavy fixtures are session-scoped. Demo models are converted once into the user cache
(``~/.cache/erp-chatbot/models``, or ``$ERP_TEST_MODELS``) and reused by later runs.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from erp_chatbot.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_KNOWLEDGE = REPO / "erp_chatbot" / "sample_knowledge"
SHARED_DATA = REPO.parent / "shared" / "data"
# The sample page gives this menu path in both UI languages, so an answer may give either.
STOCK_MOVES_MENU = ("재고 > 보고 > 재고 이동", "Inventory > Reporting > Stock Moves")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist (scripts/test.sh)
# Each worker has a Redis database of its own, so a test that counts keys sees only its own.
_DATABASE = int(_WORKER.removeprefix("gw")) + 1 if _WORKER.startswith("gw") else 0
REDIS_URL = os.environ.get("ERP_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_DATABASE}")


def _own_cores(worker: str, workers: int) -> None:
    """Hold an xdist worker (and the processes it starts) to its share of the cores. Sharing all of
    them, llama.cpp's threads waited at every step for a core that the other worker's torch held
    (a notebook took several times as long: bench/JOURNAL.md); torch and llama.cpp size their thread
    pools from the cores a process may use."""
    cores = sorted(os.sched_getaffinity(0))
    index = int(worker.removeprefix("gw"))
    share = cores[index::workers] if len(cores) >= workers else [cores[index % len(cores)]]
    os.sched_setaffinity(0, share)


if _WORKER.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _own_cores(_WORKER, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
SIGNING_KEY = "test-deployment-key"  # test indexes are signed with it, and settings load them with it


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return Path(os.environ.get("ERP_TEST_MODELS", Settings().models_dir)).expanduser()


@pytest.fixture(scope="session")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not answering at {REDIS_URL} ({error}); start it as .ci/run does")
    return client


@pytest.fixture
def session_id(redis_client) -> str:
    """A fresh session id whose Redis key is removed after the test."""
    sid = f"test-{uuid.uuid4().hex[:12]}"
    yield sid
    redis_client.delete(f"context:{sid}")


@pytest.fixture(scope="session")
def e5_dir(models_dir: Path) -> Path:
    from erp_chatbot.models.demo import demo_embeddings_path

    return demo_embeddings_path(models_dir)


@pytest.fixture(scope="session")
def embeddings(e5_dir: Path):
    from erp_chatbot.models.embeddings import build_embeddings
    from erp_chatbot.settings import EmbeddingSettings

    return build_embeddings(e5_dir, EmbeddingSettings(), "cpu")


@pytest.fixture(scope="session")
def sample_index_dir(tmp_path_factory, embeddings) -> Path:
    index_dir = tmp_path_factory.mktemp("sample-index")
    ingest_folder(SAMPLE_KNOWLEDGE, index_dir, embeddings)
    return index_dir


def ingest_folder(source: Path, index_dir: Path, embeddings, chunk_size: int = 800, signing_key: str = SIGNING_KEY):
    """Ingest with the default chunking and the demo embedding model's name, quietly."""
    from erp_chatbot.knowledge.ingest import ingest

    return ingest(
        source,
        index_dir,
        embeddings,
        embedding_model="multilingual-e5-small",
        chunk_size=chunk_size,
        chunk_overlap=100,
        progress=False,
        signing_key=signing_key,
    )


@pytest.fixture(scope="session")
def sample_index(sample_index_dir: Path, embeddings):
    from erp_chatbot.knowledge import index

    return index.load(sample_index_dir, embeddings, signing_key=SIGNING_KEY)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2"), seed=0)


def build_tiny_lm(path: Path, seed: int) -> Path:
    """A random 2-layer GPT-2 with a word-level tokenizer and a chat template, built locally."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_KNOWLEDGE.rglob("*.md"))]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"], vocab_size=800))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=4096,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    # no end-of-sequence token, so every generation runs to max_new_tokens and streams many chunks
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_settings(tmp_path: Path, tiny_lm_dir: Path, e5_dir: Path, index_dir: Path, **overrides) -> Settings:
    base = {
        "home": tmp_path,
        "llm": {"model_path": tiny_lm_dir, "max_new_tokens": 12, "temperature": 0},
        "embeddings": {"model_path": e5_dir},
        "knowledge": {"index_dir": index_dir, "signing_key": SIGNING_KEY},
        "memory": {"redis_url": REDIS_URL},
        "cache": {"enabled": False},  # tests of the cache turn it on with their own prefix
        "server": {"rate_limit_per_minute": None},  # tests of the limit set their own
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Settings(**base)


def concurrently(function, items):
    """``function`` on every item at once, one thread each: results (or errors) in item order."""
    results = [None] * len(items)

    def run(index):
        try:
            results[index] = function(items[index])
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


LONGEST_MODULES = ("test_notebooks.py", "test_llama_cpp.py")  # the two longest (--durations)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the bundled Qwen or a browser is slow, wherever it lives. The longest
    modules start first, then the slow ones, so that under pytest-xdist (``scripts/test.sh``) no
    worker is left with a long module at the end while the others idle; quick tests fill the gaps."""
    for item in items:
        if item.get_closest_marker("demo_llm") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: (item.path.name not in LONGEST_MODULES, item.get_closest_marker("slow") is None))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core while each has ~10 GB of memory (a worker holding the demo
    models and an index peaks near 9 GB), so a 2-core, 24 GB machine runs two and a 16 GB laptop one."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(os.cpu_count() or 1, int(memory_gb // 10)))
