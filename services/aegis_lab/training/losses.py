"""The distillation objective: what "the student writes into the teacher's space" is scored by.

Pure tensor functions (no model, no data), so the probe script and tests use the same terms as
the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from aegis_lab.training import SCORE_LOSSES

__all__ = ["SCORE_LOSSES", "matryoshka_loss"]


def matryoshka_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    dims: Sequence[int],
    mse_weight: float,
    contrastive_weight: float = 0.0,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    score_weight: float = 0.0,
    score_temperature: float = 0.05,
    cos_weight: float = 1.0,
    score_loss: str = "kl",
    binary_weight: float = 0.0,
    binary_sharpness: float = 2.0,
) -> tuple[torch.Tensor, dict[int, float]]:
    """Σ over Matryoshka dims of 1 - cos of the prefixes, plus λ·MSE of the unit vectors.

    The teacher rows may be unit vectors of the full width; each prefix is compared by cosine,
    which renormalizes both sides exactly as the gateway does when it truncates. With
    ``contrastive_weight``, each prefix also gets an InfoNCE term: the student vector must
    score its own teacher vector above the teacher vectors of the rest of the batch and of
    ``negatives`` (more teacher rows, free because they are cached). Cosine alone on a small
    corpus mostly matches the direction all teacher vectors share and loses the differences
    that rank documents (docs/alignment.md measures it); the ranking term keeps them.

    With ``score_weight``, each prefix also gets a listwise score-distillation term: over the
    same pool of teacher vectors minus the text's own, the student's softmax of similarities
    must match the teacher's (KL(teacher ‖ student)). That is the asymmetric search itself —
    a student query scored against teacher documents must rank them as the teacher's query
    would — and, unlike InfoNCE, it does not push the student away from the teacher vectors
    of texts the teacher itself finds similar. ``score_loss="margin-mse"`` scores the same pool
    by Margin-MSE instead: the student's margin between the own teacher vector and each other
    row must equal the teacher's.

    With ``binary_weight``, each prefix also gets a term for the binary encoding, where both
    sides are cut to sign bits: the student's soft signs (``tanh`` of its scaled components)
    must agree with the teacher's sign bits, and, with a score term, the listwise KL is also
    taken over sign-bit scores of the pool. Float cosine says nothing about components near
    zero, which flip bits; this term pushes them to the teacher's side.
    """
    if score_loss not in SCORE_LOSSES:
        raise ValueError(f"score_loss {score_loss!r} is none of {', '.join(SCORE_LOSSES)}")
    total = student.new_zeros(())
    per_dim: dict[int, float] = {}
    pool = teacher if negatives is None else torch.cat([teacher, negatives])
    labels = torch.arange(len(student), device=student.device)
    for d in dims:
        s_d = F.normalize(student[:, :d], dim=1)
        t_d = F.normalize(teacher[:, :d], dim=1)
        cos = (s_d * t_d).sum(dim=1).mean()
        total = total + cos_weight * (1.0 - cos)
        per_dim[d] = float(cos.detach())
        if contrastive_weight or score_weight:
            pool_d = F.normalize(pool[:, :d], dim=1)
        if contrastive_weight:
            logits = s_d @ pool_d.T / temperature
            total = total + contrastive_weight * F.cross_entropy(logits, labels)
        if score_weight:
            if score_loss == "kl":
                term = _score_kl(s_d, t_d, pool_d, score_temperature)
            else:
                term = _margin_mse(s_d, t_d, pool_d)
            total = total + score_weight * term
        if binary_weight:
            total = total + binary_weight * _binary_term(
                s_d, t_d, pool_d if score_weight else None, binary_sharpness, score_temperature
            )
    if mse_weight:
        total = total + mse_weight * F.mse_loss(
            F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        )
    return total, per_dim


def _own_columns(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Mask of each row's own pool column: the pool starts with the batch's teacher rows."""
    own = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    own[torch.arange(rows), torch.arange(rows)] = True
    return own


def _kl_of_scores(s_scores: torch.Tensor, t_scores: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the row softmaxes of two score matrices over the same pool,
    leaving out each row's own column (i, i)."""
    own = _own_columns(len(s_scores), s_scores.shape[1], s_scores.device)
    s_log = F.log_softmax((s_scores / tau).masked_fill(own, float("-inf")), dim=1)
    t_log = F.log_softmax((t_scores / tau).masked_fill(own, float("-inf")), dim=1)
    kl = t_log.exp() * (t_log - s_log)
    return kl.masked_fill(own, 0.0).sum(dim=1).mean()


def _score_kl(
    s_d: torch.Tensor, t_d: torch.Tensor, pool_d: torch.Tensor, tau: float
) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmax over ``pool_d``, leaving out each row's own (i, i)."""
    return _kl_of_scores(s_d @ pool_d.T, t_d @ pool_d.T, tau)


def _margin_mse(s_d: torch.Tensor, t_d: torch.Tensor, pool_d: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the margins score(own row) - score(other row), student
    against teacher, over every other pool row."""
    s_scores, t_scores = s_d @ pool_d.T, t_d @ pool_d.T
    rows = torch.arange(len(s_d), device=s_d.device)
    s_margin = s_scores[rows, rows].unsqueeze(1) - s_scores
    t_margin = t_scores[rows, rows].unsqueeze(1) - t_scores
    own = _own_columns(len(s_d), pool_d.shape[0], s_d.device)
    return (s_margin - t_margin).pow(2).masked_fill(own, 0.0).sum() / max(1, (~own).sum())


def _binary_term(
    s_d: torch.Tensor,
    t_d: torch.Tensor,
    pool_d: torch.Tensor | None,
    sharpness: float,
    tau: float,
) -> torch.Tensor:
    """1 - cos(soft signs of the student, sign bits of the teacher); with a pool, plus the KL
    of the sign-bit scores (what binary search ranks by) over the pool."""
    scale = sharpness * s_d.shape[1] ** 0.5  # unit-vector components are ~1/sqrt(d)
    soft = torch.tanh(s_d * scale)
    bits = torch.sign(t_d)
    term = 1.0 - F.cosine_similarity(soft, bits, dim=1).mean()
    if pool_d is not None:
        d = s_d.shape[1]
        pool_bits = torch.sign(pool_d)
        term = term + _kl_of_scores(soft @ pool_bits.T / d, bits @ pool_bits.T / d, tau)
    return term
