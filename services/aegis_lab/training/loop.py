"""The training loop: the train/validation split, the optimizer and its schedule, the steps.

Each step embeds a batch of corpus texts with the student and pulls it towards the cached
teacher vectors (``losses.matryoshka_loss``); every ``eval_every`` steps the held-out texts are
scored and, with a dev set, ``dev.DevCheck`` decides whether to keep the weights. A time budget
shortens the schedule as it runs, so the learning rate still reaches 0 when time is up. Every
row is appended to ``training_log.jsonl`` as it happens.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from aegis_lab.training.dev import DevCheck
from aegis_lab.training.losses import matryoshka_loss
from aegis_lab.training.student_model import StudentModel, _batch

if TYPE_CHECKING:
    from aegis_lab.training.distill import DistillConfig

__all__ = ["TrainData", "Trainer", "split_corpus", "teacher_neighbours"]

log = logging.getLogger(__name__)


def teacher_neighbours(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """For each of ``rows``, the ``k`` other rows (of ``rows``) nearest by teacher cosine.

    They join the pool of the contrastive and score terms: random texts are mostly unrelated,
    and ranking the top of a result list is decided among near neighbours.
    """
    sub = vectors[rows]
    out = np.zeros((len(rows), k), dtype=np.int64)
    for c in range(0, len(rows), 2048):
        sim = sub[c : c + 2048] @ sub.T
        sim[np.arange(len(sim)), np.arange(c, c + len(sim))] = -np.inf
        out[c : c + 2048] = np.argpartition(-sim, k, axis=1)[:, :k]
    return rows[out]


def _lr_lambda(plan: dict[str, int]) -> Callable[[int], float]:
    """Linear warmup then linear decay to 0 at ``plan["total"]`` (which a time budget may cut)."""

    def f(step: int) -> float:
        total, warmup = plan["total"], plan["warmup"]
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


@dataclass
class TrainData:
    """The corpus as the loop sees it: texts, their teacher vectors, and the split by index."""

    texts: list[str]
    target: torch.Tensor  # teacher vectors, by text index
    train_idx: np.ndarray
    val_idx: np.ndarray
    n_val: int  # the validation size asked for (``val_idx`` may be shorter)
    neighbours: np.ndarray | None  # by text index: the training texts nearest to each one


def split_corpus(
    texts: list[str],
    vectors: np.ndarray,
    cfg: DistillConfig,
    held_out: set[str] | None = None,
) -> TrainData:
    """Shuffle (seeded) into validation and training texts, leaving out ``held_out`` texts
    (the dev set's), and find each training text's teacher neighbours if asked."""
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))
    n_val = min(max(1, round(len(texts) * cfg.val_fraction)), 1024) if cfg.val_fraction else 0
    if held_out is not None:
        order = order[[texts[i] not in held_out for i in order]]
    val_idx, train_idx = order[:n_val], order[n_val:]
    nbrs = None
    if cfg.neighbours:
        nbrs = np.zeros((len(texts), cfg.neighbours), dtype=np.int64)
        nbrs[train_idx] = teacher_neighbours(vectors, train_idx, cfg.neighbours)
    return TrainData(texts, torch.from_numpy(vectors).float(), train_idx, val_idx, n_val, nbrs)


class Trainer:
    """One run of the step loop over ``data``; ``rows`` is everything it logged, in order."""

    def __init__(
        self,
        model: StudentModel,
        data: TrainData,
        cfg: DistillConfig,
        dims: list[int],
        prompt: str,
        device: str,
        log_path: Path,
        dev: DevCheck | None = None,
    ) -> None:
        self.model, self.data, self.cfg = model, data, cfg
        self.dims, self.prompt, self.device = dims, prompt, device
        self.log_path, self.dev = log_path, dev
        self.rows: list[dict[str, Any]] = []
        self.steps_per_epoch = math.ceil(len(data.train_idx) / cfg.batch_size)
        self.total_steps = max(1, math.ceil(self.steps_per_epoch * cfg.epochs))
        head = list(model.dense.parameters()) if model.dense is not None else []
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
        groups = [{"params": body, "lr": cfg.lr}]
        if head:
            groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_multiplier})
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.plan = {
            "total": self.total_steps,
            "warmup": round(self.total_steps * cfg.warmup_fraction),
        }
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(self.plan))
        self.train_seconds = 0.0

    def record(self, row: dict[str, Any]) -> None:
        """Keep ``row`` and append it to the log file at once (a killed run keeps its log)."""
        self.rows.append(row)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def batch_loss(
        self, texts_idx: np.ndarray, negatives: torch.Tensor | None, max_len: int
    ) -> tuple[torch.Tensor, dict[int, float]]:
        """The student's loss on the texts ``texts_idx`` against their teacher vectors."""
        cfg, data = self.cfg, self.data
        batch = _batch(self.model.emb, [data.texts[i] for i in texts_idx], self.prompt, max_len)
        pred = self.model(batch)
        return matryoshka_loss(
            pred,
            data.target[texts_idx].to(self.device),
            self.dims,
            cfg.mse_weight,
            cfg.contrastive_weight,
            negatives,
            cfg.temperature,
            cfg.score_weight,
            cfg.score_temperature,
            cfg.cos_weight,
        )

    def evaluate(self) -> tuple[float, dict[int, float]]:
        """Mean loss and per-dim cosine over the validation texts (no extra negatives)."""
        model, val_idx, n_val = self.model, self.data.val_idx, self.data.n_val
        model.eval()
        losses, cos_sum, n = 0.0, dict.fromkeys(self.dims, 0.0), 0
        with torch.no_grad():
            for s in range(0, n_val, 128):
                idx = val_idx[s : s + 128]
                loss, per = self.batch_loss(idx, None, self.cfg.max_seq_len)
                losses += float(loss) * len(idx)
                for d in self.dims:
                    cos_sum[d] += per[d] * len(idx)
                n += len(idx)
        model.train()
        return losses / max(1, n), {d: c / max(1, n) for d, c in cos_sum.items()}

    def _record_val(self, step: int) -> float:
        loss, cos = self.evaluate() if self.data.n_val else (float("nan"), {})
        self.record(
            {"kind": "val", "step": step, "loss": loss, "cos": {str(d): c for d, c in cos.items()}}
        )
        return loss

    def _negatives(self, gen: np.random.Generator, idx: np.ndarray) -> torch.Tensor | None:
        """Extra teacher rows for the contrastive and score terms: random training texts plus
        the batch's teacher neighbours, minus the batch itself."""
        cfg, data = self.cfg, self.data
        if not (cfg.contrastive_weight or cfg.score_weight):
            return None
        if not (cfg.negatives or data.neighbours is not None):
            return None
        train_idx = data.train_idx
        extra = gen.integers(0, len(train_idx), size=min(cfg.negatives, len(train_idx)))
        extra = train_idx[extra]
        if data.neighbours is not None:
            extra = np.concatenate([data.neighbours[idx].ravel(), extra])
        extra = np.unique(extra[~np.isin(extra, idx)])
        return data.target[extra].to(self.device)

    def _fit_time_budget(self, step: int, started: float, bar: tqdm) -> None:
        """Cut the schedule to the steps the time budget still allows (rechecked, the CPU may
        be shared), so the learning rate still decays to 0 when the budget runs out."""
        budget = self.cfg.max_train_seconds
        if not budget or step < 10 or step % 10 != 0:
            return
        elapsed = time.perf_counter() - started
        fits = step + int((budget - elapsed) / (elapsed / step))
        if fits < self.total_steps:
            log.warning("time budget: %d of %d steps", fits, self.total_steps)
            self.total_steps = self.plan["total"] = max(fits, step + 1)
            bar.total = self.total_steps

    def run(self) -> int:
        """Validate (and dev-check) the starting student, train, checking every ``eval_every``
        steps and at the last; returns the number of steps taken."""
        cfg, model, train_idx = self.cfg, self.model, self.data.train_idx
        self.log_path.write_text("")
        self._record_val(0)
        if self.dev is not None:
            self.record(self.dev.check(model, 0))
        model.train()
        started = time.perf_counter()
        step = 0
        bar = tqdm(total=self.total_steps, desc="distilling", unit="step", disable=not cfg.progress)
        gen = np.random.default_rng(cfg.seed + 1)
        while step < self.total_steps:
            perm = train_idx[gen.permutation(len(train_idx))]
            for s in range(0, len(perm), cfg.batch_size):
                if step >= self.total_steps:
                    break
                self._fit_time_budget(step, started, bar)
                idx = perm[s : s + cfg.batch_size]
                loss, per = self.batch_loss(idx, self._negatives(gen, idx), cfg.max_seq_len)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                self.opt.step()
                self.sched.step()
                step += 1
                bar.update(1)
                self.record(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": step / self.steps_per_epoch,
                        "loss": float(loss.detach()),
                        "lr": self.sched.get_last_lr()[0],
                        "cos": {str(d): round(c, 5) for d, c in per.items()},
                        "elapsed_s": round(time.perf_counter() - started, 2),
                    }
                )
                checkpoint = step % cfg.eval_every == 0 or step == self.total_steps
                if self.data.n_val and checkpoint:
                    val_loss = self._record_val(step)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{val_loss:.4f}")
                if self.dev is not None and checkpoint:
                    self.record(self.dev.check(model, step))
        bar.close()
        self.train_seconds = time.perf_counter() - started
        return step
