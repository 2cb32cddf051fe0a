"""An optional cross-encoder reranker: scores (question, chunk) pairs jointly, when a model is at hand.

None ships with erp-chatbot; point ``retrieval.reranker_path`` at a local sentence-transformers
CrossEncoder folder (e.g. a multilingual MS MARCO cross-encoder) to use one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class CrossEncoderReranker:
    """Higher score = more relevant; the scale is the model's own."""

    def __init__(self, model_path: Path, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(
                f"no cross-encoder at {model_path} (config.json missing); set retrieval.reranker_path to a local "
                "sentence-transformers CrossEncoder folder, or unset it"
            )
        self.model = CrossEncoder(str(model_path), device=device, local_files_only=True)
        self.batch_size = batch_size

    def scores(self, question: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        pairs = [(question, text) for text in texts]
        return [float(s) for s in self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)]
