"""Fusing the scores of several retrievers (dense, sparse) over their candidates into one ranking.

Every candidate carries a score from every side (the retriever scores what the other side found),
so no side has to guess a missing value.

- ``zscore``: each side's scores standardised (mean 0, unit deviation) and summed with weights:
  keeps how far ahead a hit is on each side. The mean and deviation are those of the side's scores
  over the whole corpus when given (``distributions``), else over the candidates. Over the corpus
  is what works: on autorag-ko, equal weights give nDCG@10 0.940 that way, 0.924 over candidates.
- ``rrf``: reciprocal rank fusion, sum of ``weight / (rrf_k + rank)`` over each side's ranking:
  uses ranks only.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Literal

Fusion = Literal["rrf", "zscore"]


Distribution = tuple[float, float]  # mean and standard deviation of a side's scores


def fuse(
    sides: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    method: Fusion,
    rrf_k: int = 60,
    distributions: Sequence[Distribution | None] | None = None,
) -> list[str]:
    """Candidate ids, best first; ``sides`` map each candidate to that side's score."""
    distributions = distributions or [None] * len(sides)
    if not len(sides) == len(weights) == len(distributions):
        raise ValueError(f"{len(sides)} score lists, {len(weights)} weights, {len(distributions)} distributions")
    fused: dict[str, float] = {}
    for side, weight, distribution in zip(sides, weights, distributions, strict=True):
        values = _rrf(side, rrf_k) if method == "rrf" else _zscore(side, distribution)
        for candidate, value in values.items():
            fused[candidate] = fused.get(candidate, 0.0) + weight * value
    return sorted(fused, key=lambda candidate: fused[candidate], reverse=True)


def _rrf(scores: Mapping[str, float], rrf_k: int) -> dict[str, float]:
    ranked = sorted(scores, key=lambda candidate: scores[candidate], reverse=True)
    return {candidate: 1.0 / (rrf_k + rank) for rank, candidate in enumerate(ranked, start=1)}


def _zscore(scores: Mapping[str, float], distribution: Distribution | None) -> dict[str, float]:
    if not scores:
        return {}
    if distribution is None:
        distribution = (statistics.fmean(scores.values()), statistics.pstdev(scores.values()))
    mean, spread = distribution
    return {candidate: (value - mean) / (spread or 1.0) for candidate, value in scores.items()}
