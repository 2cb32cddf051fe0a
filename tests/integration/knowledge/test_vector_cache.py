"""Corpus vectors kept on disk with the bundled e5: reused for the same texts and model, computed
again when either changes."""

import numpy as np

from erp_chatbot.knowledge.vector_cache import cached_vectors
from erp_chatbot.models.embeddings import WindowedHuggingFaceEmbeddings

TEXTS = ["Go to Purchase > Orders and click Confirm Order.", "재고 이동은 재고 > 보고 > 재고 이동에서 봅니다."]


class Embedder:
    """The real ``embed_documents``, counting the texts it was given."""

    def __init__(self, embeddings) -> None:
        self.embeddings, self.texts = embeddings, 0

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.embeddings.embed_documents(texts)


def test_the_same_texts_and_model_reuse_the_stored_vectors(tmp_path, embeddings):
    embed = Embedder(embeddings)
    first = cached_vectors(embeddings, TEXTS, tmp_path, embed)
    again = cached_vectors(embeddings, TEXTS, tmp_path, embed)
    assert embed.texts == 2 and again == first and len(list(tmp_path.glob("*.npy"))) == 1
    assert np.allclose(first, embeddings.embed_documents(TEXTS), atol=1e-6)  # float32 of the real vectors

    changed = cached_vectors(embeddings, [TEXTS[0], TEXTS[1] + " "], tmp_path, embed)
    assert embed.texts == 4 and np.allclose(changed[0], first[0], atol=1e-6)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_another_prefix_is_another_model(tmp_path, embeddings, e5_dir):
    embed = Embedder(embeddings)
    cached_vectors(embeddings, TEXTS, tmp_path, embed)
    unprefixed = WindowedHuggingFaceEmbeddings(
        model_name=str(e5_dir), encode_kwargs={**embeddings.encode_kwargs, "prompt": ""}
    )
    other = Embedder(unprefixed)
    cached_vectors(unprefixed, TEXTS, tmp_path, other)
    assert other.texts == 2 and not list(tmp_path.glob("*partial*"))


def test_without_a_folder_nothing_is_stored(tmp_path, embeddings):
    embed = Embedder(embeddings)
    cached_vectors(embeddings, TEXTS, None, embed)
    cached_vectors(embeddings, TEXTS, None, embed)
    assert embed.texts == 4
