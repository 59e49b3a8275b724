"""The dev set: held-out retrieval sets scored while training to pick the step to keep.

Validation loss says how close the student's vectors are to the teacher's; the dev set asks
what the service is for (do student queries find the right teacher documents?), so the step
written out is the one that scores best there, not the last one. ``suite`` is the dev split of
the evaluation suite (every task, scored as a macro average, as the report scores the test
split); the test split is never looked at while training.
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

__all__ = [
    "DEV_METRICS",
    "DevCheck",
    "DevSet",
    "DevTexts",
    "embed_dev_set",
    "embed_dev_sets",
    "read_dev_set",
    "read_dev_sets",
]

# ``suite-small``: per task of the suite's dev split, this many queries and documents (the
# relevant ones first, then distractors), so a dev check costs seconds on a CPU.
SMALL_QUERIES, SMALL_DOCUMENTS = 120, 600

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
    relevant: list[int] | list[list[int]]
    texts: set[str]
    teacher_queries: np.ndarray
    teacher_documents: np.ndarray
    name: str = "dev"


DevTexts = tuple[list[str], list[str], list[int] | list[list[int]], set[str]]


def _small(task: Any) -> DevTexts:
    """The first queries of a task and a document set holding their relevant documents."""
    queries = task.queries[:SMALL_QUERIES]
    relevant = task.relevant[:SMALL_QUERIES]
    keep: list[int] = sorted({d for rel in relevant for d in rel})
    others = [i for i in range(len(task.documents)) if i not in set(keep)]
    keep += others[: max(0, SMALL_DOCUMENTS - len(keep))]
    index = {old: new for new, old in enumerate(keep)}
    docs = [task.documents[i] for i in keep]
    rel = [[index[d] for d in r] for r in relevant]
    return queries, docs, rel, set(queries) | set(docs)


def read_dev_sets(name: str) -> list[tuple[str, DevTexts]]:
    """Named dev sets: ``suite`` / ``suite-small`` / ``suite-tiny`` (the evaluation suite's dev
    split, whole, cut to ``SMALL_*`` per task, or its CI size), else one set (``read_dev_set``).
    Read before any model loads, so a bad name fails at once."""
    sizes = {"suite": "full", "suite-small": "full", "suite-tiny": "tiny"}
    if name in sizes:
        from aegis_lab.evaluation.suite import load_suite

        tasks = load_suite("dev", sizes[name])
        if name == "suite-small":
            return [(t.name, _small(t)) for t in tasks]
        return [(t.name, (t.queries, t.documents, t.relevant, set(t.queries) | set(t.documents)))
                for t in tasks]  # fmt: skip
    return [(name, read_dev_set(name))]


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
        raise ValueError(
            f"dev set {name!r} is none of 'suite', 'suite-small', 'suite-tiny', 'wordnet-dev' "
            "nor a JSON file"
        )
    return q, d, rel, texts


def embed_dev_set(
    dev_texts: DevTexts, teacher: Embedder, progress: bool, name: str = "dev"
) -> DevSet:
    """The dev set with the teacher's vectors of its queries and documents (cached)."""
    q, d, rel, texts = dev_texts
    t_q = embed_cached(teacher, q, "query", progress)
    t_d = embed_cached(teacher, d, "document", progress)
    return DevSet(q, d, rel, texts, t_q, t_d, name)


def embed_dev_sets(
    sets: Sequence[tuple[str, DevTexts]], teacher: Embedder, progress: bool
) -> list[DevSet]:
    return [embed_dev_set(texts, teacher, progress, name) for name, texts in sets]


class DevCheck:
    """Scores the student on the dev sets at checkpoints and keeps the weights of the best one.

    With several sets (the suite's tasks) every score is their macro average; the full-dim
    student→teacher nDCG@10 of each set is logged too. The teacher's dev documents, as an index
    scores them at each dim and encoding, are fixed, so they are scored once here.
    """

    def __init__(
        self,
        dev: DevSet | Sequence[DevSet],
        name: str,
        metric: str,
        dims: Sequence[int],
        query_prompt: str,
        document_prompt: str,
    ) -> None:
        self.sets = [dev] if isinstance(dev, DevSet) else list(dev)
        self.name = name
        self.metric = metric
        self.key = DEV_METRICS[metric]
        self.dims = list(dims)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.teacher_docs: list[dict[tuple[int, str], np.ndarray]] = [
            {
                (d, enc): score_vectors(dev.teacher_documents, d, enc, None)
                for d in self.dims
                for enc in ("float32", "binary")
            }
            for dev in self.sets
        ]
        self.rows: list[dict[str, Any]] = []  # the logged dev rows, in order
        self.best_step = -1
        self.best_score = float("-inf")
        self._best_state: dict[str, torch.Tensor] = {}

    def _embed(self, model: StudentModel, texts: list[str], prompt: str) -> np.ndarray:
        """Student vectors, longest texts first in batches (little padding), in input order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), model.out_dim), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, len(order), 64):
                idx = order[s : s + 64]
                batch = _batch(model.emb, [texts[i] for i in idx], prompt, 512)
                out[idx] = model(batch).float().cpu().numpy()
        return out

    def _score_set(self, model: StudentModel, i: int) -> dict[str, Any]:
        dev, dims, teacher_docs = self.sets[i], self.dims, self.teacher_docs[i]
        queries = self._embed(model, dev.queries, self.query_prompt)
        documents = self._embed(model, dev.documents, self.document_prompt)
        per_dim = {
            (d, enc): evaluate_pair(score_vectors(queries, d, enc, None), docs, dev.relevant)[0][
                "ndcg_at_10"
            ]
            for (d, enc), docs in teacher_docs.items()
        }
        full = max(dims)
        s_s = evaluate_pair(
            score_vectors(queries, full, "float32", None),
            score_vectors(documents, full, "float32", None),
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

    def score(self, model: StudentModel) -> dict[str, Any]:
        """nDCG@10 of student queries against teacher documents at every Matryoshka dim, and
        against student documents at full dim (macro over the sets); ``metric`` picks the one
        to select on."""
        model.eval()
        per_set = [self._score_set(model, i) for i in range(len(self.sets))]
        model.train()
        if len(per_set) == 1:
            return per_set[0]
        out: dict[str, Any] = {}
        for key, value in per_set[0].items():
            if isinstance(value, dict):
                out[key] = {k: float(np.mean([p[key][k] for p in per_set])) for k in value}
            else:
                out[key] = float(np.mean([p[key] for p in per_set]))
        out["tasks"] = {
            dev.name: p["student_teacher_ndcg_at_10"]
            for dev, p in zip(self.sets, per_set, strict=True)
        }
        return out

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
