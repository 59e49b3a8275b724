"""Retrieval metrics: the one implementation every evaluation, benchmark and training run uses.

Plain numpy on top-k index lists, so a hand-computed example can check them. Relevance is
binary; a query may have one relevant document (an int) or several (a sequence of ints).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "K",
    "agreement_at_k",
    "evaluate_pair",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "retrieval_metrics",
    "top_k",
]

K = 10


def top_k(queries: np.ndarray, docs: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of the k highest dot-product scores per query, best first (ties: lower index)."""
    scores = queries @ docs.T
    k = min(k, docs.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part.sort(axis=1)  # lower index first, so the stable sort below breaks ties by index
    ranked = np.take_along_axis(scores, part, axis=1)
    return np.take_along_axis(part, np.argsort(-ranked, axis=1, kind="stable"), axis=1)


def _relevant_sets(relevant: Sequence[int | Sequence[int]]) -> list[set[int]]:
    return [{int(r)} if np.isscalar(r) else {int(x) for x in r} for r in relevant]


def ndcg_at_k(ranked: np.ndarray, relevant: Sequence[int | Sequence[int]], k: int = K) -> float:
    """Mean nDCG@k with binary relevance: Σ rel_i / log2(i + 2) over the ideal ordering's."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = []
    for row, rel in zip(ranked, _relevant_sets(relevant), strict=True):
        gains = np.array([1.0 if int(d) in rel else 0.0 for d in row[:k]])
        dcg = float(np.sum(gains * discounts[: len(gains)]))
        idcg = float(np.sum(discounts[: min(len(rel), k)]))
        out.append(dcg / idcg if idcg else 0.0)
    return float(np.mean(out))


def recall_at_k(ranked: np.ndarray, relevant: Sequence[int | Sequence[int]], k: int = K) -> float:
    """Mean share of each query's relevant documents found in its top k."""
    out = [
        len(rel & {int(d) for d in row[:k]}) / len(rel)
        for row, rel in zip(ranked, _relevant_sets(relevant), strict=True)
    ]
    return float(np.mean(out))


def mrr_at_k(ranked: np.ndarray, relevant: Sequence[int | Sequence[int]], k: int = K) -> float:
    """Mean reciprocal rank of the first relevant document within the top k (0 if none)."""
    out = []
    for row, rel in zip(ranked, _relevant_sets(relevant), strict=True):
        rr = 0.0
        for i, d in enumerate(row[:k]):
            if int(d) in rel:
                rr = 1.0 / (i + 1)
                break
        out.append(rr)
    return float(np.mean(out))


def agreement_at_k(ranked: np.ndarray, reference: np.ndarray, k: int = K) -> float:
    """Share of the reference (teacher) top-k that the candidate also puts in its top-k.

    Needs no labels and measures alignment with the teacher directly.
    """
    shares = [
        len(set(a[:k].tolist()) & set(b[:k].tolist())) / len(b[:k])
        for a, b in zip(ranked, reference, strict=True)
    ]
    return float(np.mean(shares))


def evaluate_pair(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Sequence[int],
    reference_top: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """nDCG/Recall/MRR@10 (and teacher agreement@10 with a reference) plus the top-10 lists."""
    ranked = top_k(queries, docs, K)
    out = {
        "ndcg_at_10": ndcg_at_k(ranked, relevant),
        "recall_at_10": recall_at_k(ranked, relevant),
        "mrr_at_10": mrr_at_k(ranked, relevant),
    }
    if reference_top is not None:
        out["teacher_agreement_at_10"] = agreement_at_k(ranked, reference_top)
    return out, ranked


def retrieval_metrics(
    queries: np.ndarray,
    docs: np.ndarray,
    relevant: Sequence[int | Sequence[int]],
    k: int = K,
    reference_top: np.ndarray | None = None,
) -> dict[str, float]:
    """MRR@k and Recall@k keyed ``mrr@k`` / ``recall@k``; with ``reference_top``, agreement@k."""
    ranked = top_k(queries, docs, k)
    out = {
        f"mrr@{k}": mrr_at_k(ranked, relevant, k),
        f"recall@{k}": recall_at_k(ranked, relevant, k),
    }
    if reference_top is not None:
        out[f"agreement@{k}"] = agreement_at_k(ranked, reference_top, k)
    return out
