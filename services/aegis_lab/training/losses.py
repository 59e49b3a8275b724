"""The distillation objective: what "the student writes into the teacher's space" is scored by.

Pure tensor functions (no model, no data), so the probe script and tests use the same terms as
the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["matryoshka_loss"]


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
    of texts the teacher itself finds similar.
    """
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
            total = total + score_weight * _score_kl(s_d, t_d, pool_d, score_temperature)
    if mse_weight:
        total = total + mse_weight * F.mse_loss(
            F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        )
    return total, per_dim


def _score_kl(
    s_d: torch.Tensor, t_d: torch.Tensor, pool_d: torch.Tensor, tau: float
) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmax over ``pool_d``, leaving out each row's own (i, i)."""
    own = torch.zeros(len(s_d), len(pool_d), dtype=torch.bool, device=s_d.device)
    own[torch.arange(len(s_d)), torch.arange(len(s_d))] = True
    s_log = F.log_softmax((s_d @ pool_d.T / tau).masked_fill(own, float("-inf")), dim=1)
    t_log = F.log_softmax((t_d @ pool_d.T / tau).masked_fill(own, float("-inf")), dim=1)
    kl = t_log.exp() * (t_log - s_log)
    return kl.masked_fill(own, 0.0).sum(dim=1).mean()
