"""The dev set: a held-out retrieval set scored while training to pick the step to keep.

Validation loss says how close the student's vectors are to the teacher's; the dev set asks
what the service is for (do student queries find the right teacher documents?), so the step
written out is the one that scores best there, not the last one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aegis_lab.embedding_cache import embed_cached
from aegis_lab.evaluation.retrieval import evaluate_pair, load_dataset, score_vectors
from aegis_lab.training.corpus import report_synset_ids
from aegis_lab.training.student_model import StudentModel, _batch
from aegis_serve.models.embedder import Embedder

__all__ = ["DEV_METRICS", "DevCheck", "DevSet", "DevTexts", "embed_dev_set", "read_dev_set"]

log = logging.getLogger(__name__)

# What --dev-metric selects on: full-dim nDCG@10, its mean over the Matryoshka dims (the
# gateway serves every dim, so a student that only holds up at full width is not the best one),
# or the mean over dims of float32 and binary (sign bits) nDCG@10 together.
DEV_METRICS = {
    "ndcg_at_10": "student_teacher_ndcg_at_10",
    "mean_ndcg_at_10": "mean_ndcg_at_10",
    "mean_float_binary_ndcg_at_10": "mean_float_binary_ndcg_at_10",
}


@dataclass
class DevSet:
    """A retrieval set held out of training, scored while training to pick the step to keep."""

    queries: list[str]
    documents: list[str]
    relevant: list[int]
    texts: set[str]
    teacher_queries: np.ndarray
    teacher_documents: np.ndarray


DevTexts = tuple[list[str], list[str], list[int], set[str]]


def read_dev_set(name: str) -> DevTexts:
    """(queries, documents, relevant, every text to keep out of training) of ``wordnet-dev``
    (500 usage examples → 2,000 definitions, outside every report set) or of a JSON file like
    ``eval --dataset PATH`` takes. Read before any model loads, so a bad name fails at once."""
    if name == "wordnet-dev":
        from aegis_lab.data.wordnet import dev_retrieval_set

        q, d, rel, texts = dev_retrieval_set(report_synset_ids())
    elif Path(name).is_file():
        q, d, rel, _ = load_dataset(name)
        texts = set(q) | set(d)
    else:
        raise ValueError(f"dev set {name!r} is neither 'wordnet-dev' nor a JSON file")
    return q, d, rel, texts


def embed_dev_set(dev_texts: DevTexts, teacher: Embedder, progress: bool) -> DevSet:
    """The dev set with the teacher's vectors of its queries and documents (cached)."""
    q, d, rel, texts = dev_texts
    t_q = embed_cached(teacher, q, "query", progress)
    t_d = embed_cached(teacher, d, "document", progress)
    return DevSet(q, d, rel, texts, t_q, t_d)


class DevCheck:
    """Scores the student on the dev set at checkpoints and keeps the weights of the best one.

    The teacher's dev documents, as an index scores them at each dim and encoding, are fixed,
    so they are scored once here, not at every check.
    """

    def __init__(
        self,
        dev: DevSet,
        name: str,
        metric: str,
        dims: Sequence[int],
        query_prompt: str,
        document_prompt: str,
    ) -> None:
        self.dev = dev
        self.name = name
        self.metric = metric
        self.key = DEV_METRICS[metric]
        self.dims = list(dims)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.teacher_docs: dict[tuple[int, str], np.ndarray] = {
            (d, enc): score_vectors(dev.teacher_documents, d, enc, None)
            for d in self.dims
            for enc in ("float32", "binary")
        }
        self.rows: list[dict[str, Any]] = []  # the logged dev rows, in order
        self.best_step = -1
        self.best_score = float("-inf")
        self._best_state: dict[str, torch.Tensor] = {}

    def score(self, model: StudentModel) -> dict[str, Any]:
        """nDCG@10 of student queries against teacher documents at every Matryoshka dim, and
        against student documents at full dim; ``metric`` picks the one to select on."""
        dev, dims = self.dev, self.dims
        model.eval()
        vecs = []
        with torch.no_grad():
            for group, prompt in (
                (dev.queries, self.query_prompt),
                (dev.documents, self.document_prompt),
            ):
                parts = [
                    model(_batch(model.emb, group[s : s + 128], prompt, 512)).cpu()
                    for s in range(0, len(group), 128)
                ]
                vecs.append(torch.cat(parts).float().numpy())
        model.train()
        per_dim = {
            (d, enc): evaluate_pair(
                score_vectors(vecs[0], d, enc, None), teacher_docs, dev.relevant
            )[0]["ndcg_at_10"]
            for (d, enc), teacher_docs in self.teacher_docs.items()
        }
        full = max(dims)
        s_s = evaluate_pair(
            score_vectors(vecs[0], full, "float32", None),
            score_vectors(vecs[1], full, "float32", None),
            dev.relevant,
        )[0]["ndcg_at_10"]
        floats = [v for (_, enc), v in per_dim.items() if enc == "float32"]
        return {
            "student_teacher_ndcg_at_10": per_dim[(full, "float32")],
            "student_teacher_ndcg_at_10_by_dim": {str(d): per_dim[(d, "float32")] for d in dims},
            "binary_ndcg_at_10_by_dim": {str(d): per_dim[(d, "binary")] for d in dims},
            "mean_ndcg_at_10": float(np.mean(floats)),
            "mean_float_binary_ndcg_at_10": float(np.mean(list(per_dim.values()))),
            "student_student_ndcg_at_10": s_s,
        }

    def check(self, model: StudentModel, step: int) -> dict[str, Any]:
        """Score ``model`` at ``step``; keep a copy of its weights if it is the best so far (the
        first of equal scores wins). Returns the log row."""
        score = self.score(model)
        row = {"kind": "dev", "step": step, **score}
        self.rows.append(row)
        if self.best_step < 0 or score[self.key] > self.best_score:
            self._best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best_step, self.best_score = step, score[self.key]
        return row

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the check: its rows and the best weights so far."""
        return {"rows": self.rows, "best_step": self.best_step, "best_score": self.best_score,
                "best_state": self._best_state}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])
        self.best_step, self.best_score = state["best_step"], state["best_score"]
        self._best_state = state["best_state"]

    def keep_best(self, model: StudentModel, last_step: int) -> dict[str, Any]:
        """Load the best step's weights into ``model`` (unless it is the last step); returns the
        ``dev`` part of the training summary."""
        if self.best_step != last_step:
            model.load_state_dict(self._best_state)
        info = {
            "set": self.name,
            "metric": self.metric,
            "start": self.rows[0][self.key],
            "kept_step": self.best_step,
            "kept": self.best_score,
            "kept_scores": next(r for r in self.rows if r["step"] == self.best_step),
            "improved": self.best_step > 0,
        }
        if self.best_step == 0:
            log.warning(
                "no training step beat the starting student on %s (%s %.4f): the output is "
                "the starting student",
                self.name,
                self.metric,
                self.best_score,
            )
        return info
