"""The training loop: the train/validation split, the optimizer and its schedule, the steps.

Each step embeds a batch of corpus texts with the student and pulls it towards the cached
teacher vectors (``losses.matryoshka_loss``); every ``eval_every`` steps the held-out texts are
scored and, with a dev set, ``dev.DevCheck`` decides whether to keep the weights. A time budget
shortens the schedule as it runs, so the learning rate still reaches 0 when time is up. Every
row is appended to ``training_log.jsonl`` as it happens.

Built for long CPU runs: batches are length-bucketed (texts of similar length together, so
little padding), and the whole state (weights, optimizer, schedule, data position, random
generator, log rows, the dev check's best weights) is written to ``checkpoint.pt`` every few
minutes, when a segment's time is up, and on SIGINT/SIGTERM; a later run with ``resume``
continues from it exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
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

__all__ = [
    "CHECKPOINT",
    "Paused",
    "TrainData",
    "Trainer",
    "bucketed_batches",
    "mine_rows",
    "split_corpus",
    "teacher_neighbours",
]

CHECKPOINT = "checkpoint.pt"
# Texts shuffled together before sorting by length into batches: large enough that most
# batches hold texts of about one length, small enough that each epoch still mixes sources.
BUCKET_BATCHES = 64
# Student-mined negatives are searched on this prefix of the teacher's vectors (the space is
# calibrated, so its leading dims hold most of the ranking): 1 KB per training text in
# float32, so a million-text corpus costs 1 GB instead of 3.
MINE_DIMS = 256


class Paused(Exception):
    """The run stopped early with its state checkpointed (segment over, or a signal)."""

    def __init__(self, step: int, total: int, reason: str) -> None:
        super().__init__(f"paused at step {step} of {total} ({reason})")
        self.step, self.total, self.reason = step, total, reason


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


def mine_rows(
    queries: torch.Tensor, matrix: torch.Tensor, rows: np.ndarray, exclude: np.ndarray, k: int
) -> np.ndarray:
    """For each query vector, the ``k`` ``rows`` whose ``matrix`` vectors it scores highest,
    leaving out the ``exclude`` rows; all of them, deduplicated.

    With the student's vectors of a batch as queries and the teacher's training vectors as the
    matrix, these are the teacher documents the student currently confuses with the right one
    (ANCE-style mining, fresh every step because the batch is embedded anyway). The score terms
    then match the teacher's scores on exactly those rows.
    """
    want = min(len(rows), k + len(exclude))
    with torch.no_grad():
        top = torch.topk(queries @ matrix.T, want, dim=1).indices.cpu().numpy()
    found = rows[top]
    keep = ~np.isin(found, exclude)
    picked = [row[mask][:k] for row, mask in zip(found, keep, strict=True)]
    return np.unique(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _lr_lambda(plan: dict[str, int]) -> Callable[[int], float]:
    """Linear warmup then linear decay to 0 at ``plan["total"]`` (which a time budget may cut)."""

    def f(step: int) -> float:
        total, warmup = plan["total"], plan["warmup"]
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def bucketed_batches(
    train_idx: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """One epoch's batches: a seeded shuffle, cut into runs of ``BUCKET_BATCHES`` batches whose
    texts are sorted by length, then the batches shuffled. Depends only on (seed, epoch), so a
    resumed run sees the same batches."""
    rng = np.random.default_rng([seed, epoch])
    perm = train_idx[rng.permutation(len(train_idx))]
    run = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(perm), run):
        chunk = perm[start : start + run]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def adamw(groups: list[dict[str, Any]], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one (CPU too): 10 ms instead of ~240 ms per
    step for MiniLM's 22M parameters on two cores, where the per-tensor loop was a quarter of
    every training step."""
    try:
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, foreach=True)


# Settings a resumed run may change: how long it runs, how it reports, where it runs.
RESUME_FREE = frozenset(
    {"resume", "segment_seconds", "checkpoint_every_s", "progress", "threads", "max_train_seconds",
     "eval_every", "device", "cache"}
)  # fmt: skip


def resume_key(cfg: DistillConfig) -> dict[str, Any]:
    """The settings a checkpoint must match to be resumed."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE}


@dataclass
class TrainData:
    """The corpus as the loop sees it: texts, their teacher vectors, and the split by index."""

    texts: list[str]
    target: torch.Tensor  # teacher vectors, by text index
    train_idx: np.ndarray
    val_idx: np.ndarray
    n_val: int  # the validation size asked for (``val_idx`` may be shorter)
    neighbours: np.ndarray | None  # by text index: the training texts nearest to each one
    lengths: np.ndarray | None = None  # characters per text (the bucketing key)


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
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int32, count=len(texts))
    # Targets stay in the cache's dtype (float16 for a large corpus); batches are cast.
    return TrainData(
        texts, torch.from_numpy(np.ascontiguousarray(vectors)), train_idx, val_idx, n_val, nbrs,
        lengths,
    )  # fmt: skip


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
        self.opt = adamw(groups, cfg.lr, cfg.weight_decay)
        self.plan = {
            "total": self.total_steps,
            "warmup": round(self.total_steps * cfg.warmup_fraction),
        }
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(self.plan))
        self.train_seconds = 0.0
        self.position: tuple[int, int] = (0, 0)  # (epoch, next batch in it)
        self._epoch_perm: np.ndarray | None = None  # this epoch's order (unbucketed runs)
        self.config_key = resume_key(cfg)
        self._seconds_before = 0.0
        self._segment_started = self._last_checkpoint = time.perf_counter()
        self._segment_start_step = 0
        self._mine_matrix: torch.Tensor | None = None  # teacher training vectors, for mining

    def record(self, row: dict[str, Any]) -> None:
        """Keep ``row`` and append it to the log file at once (a killed run keeps its log)."""
        self.rows.append(row)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def batch_loss(
        self,
        texts_idx: np.ndarray,
        extra_idx: np.ndarray | None,
        max_len: int,
        mine: bool = False,
    ) -> tuple[torch.Tensor, dict[int, float]]:
        """The student's loss on the texts ``texts_idx`` against their teacher vectors, with
        the teacher vectors of ``extra_idx`` (and, with ``mine``, of the rows the student
        scores highest now) in the pool of the contrastive and score terms."""
        cfg, data = self.cfg, self.data
        batch = _batch(self.model.emb, [data.texts[i] for i in texts_idx], self.prompt, max_len)
        pred = self.model(batch)
        if mine and cfg.mined:
            mined = self.mine(pred, texts_idx)
            extra_idx = mined if extra_idx is None else np.union1d(extra_idx, mined)
        negatives = None
        if extra_idx is not None and len(extra_idx):
            negatives = data.target[extra_idx].to(self.device, torch.float32)
        return matryoshka_loss(
            pred,
            data.target[texts_idx].to(self.device, torch.float32),
            self.dims,
            cfg.mse_weight,
            cfg.contrastive_weight,
            negatives,
            cfg.temperature,
            cfg.score_weight,
            cfg.score_temperature,
            cfg.cos_weight,
            cfg.score_loss,
            cfg.binary_weight,
            cfg.binary_sharpness,
        )

    def mine(self, pred: torch.Tensor, texts_idx: np.ndarray) -> np.ndarray:
        """The training texts whose teacher vectors the student's vectors of this batch score
        highest (``cfg.mined`` per text), the batch itself left out."""
        if self._mine_matrix is None:
            train = self.data.target[:, :MINE_DIMS][self.data.train_idx]  # the prefix only
            self._mine_matrix = torch.nn.functional.normalize(
                train.to(self.device, torch.float32), dim=1
            )
        dims = self._mine_matrix.shape[1]
        queries = torch.nn.functional.normalize(pred.detach()[:, :dims].float(), dim=1)
        return mine_rows(queries, self._mine_matrix, self.data.train_idx, texts_idx, self.cfg.mined)

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

    def _negatives(self, gen: np.random.Generator, idx: np.ndarray) -> np.ndarray | None:
        """Extra teacher rows for the contrastive and score terms: random training texts plus
        the batch's teacher neighbours, minus the batch itself (student-mined rows are added
        in ``batch_loss``, once the batch is embedded)."""
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
        return np.unique(extra[~np.isin(extra, idx)])

    def _fit_time_budget(self, step: int, bar: tqdm) -> None:
        """Cut the schedule to the steps the time budget still allows (rechecked, the CPU may
        be shared), so the learning rate still decays to 0 when the budget runs out. The
        budget counts training time over every resumed segment."""
        budget = self.cfg.max_train_seconds
        if not budget or step < 10 or step % 10 != 0:
            return
        elapsed = self.elapsed()
        done_here = step - self._segment_start_step
        if done_here < 10:
            return
        per_step = (elapsed - self._seconds_before) / done_here
        fits = step + int((budget - elapsed) / per_step)
        if fits < self.total_steps:
            log.warning("time budget: %d of %d steps", fits, self.total_steps)
            self.total_steps = self.plan["total"] = max(fits, step + 1)
            bar.total = self.total_steps

    def elapsed(self) -> float:
        """Training seconds so far, over this segment and every one before it."""
        return self._seconds_before + (time.perf_counter() - self._segment_started)

    def _epochs(self, gen: np.random.Generator) -> Iterator[tuple[int, int, np.ndarray]]:
        """(epoch, batch number in it, batch) from the resume position on."""
        cfg, data = self.cfg, self.data
        epoch, first = self.position
        while True:
            if cfg.bucket_batches and data.lengths is not None:
                batches = bucketed_batches(
                    data.train_idx, data.lengths, cfg.batch_size, cfg.seed, epoch
                )
            else:  # the original order: one permutation per epoch from the run's generator
                if self._epoch_perm is None or first == 0:
                    self._epoch_perm = data.train_idx[gen.permutation(len(data.train_idx))]
                perm, size = self._epoch_perm, cfg.batch_size
                batches = [perm[s : s + size] for s in range(0, len(perm), size)]
            for b in range(first, len(batches)):
                yield epoch, b, batches[b]
            epoch, first = epoch + 1, 0

    # ------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path:
        return self.log_path.parent / CHECKPOINT

    def save_checkpoint(self, step: int, gen: np.random.Generator) -> None:
        """Everything a resumed run needs, written atomically (a kill leaves the old one)."""
        state = {
            "step": step,
            "position": list(self.position),
            "total_steps": self.total_steps,
            "plan": dict(self.plan),
            "train_seconds": self.elapsed(),
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "gen": gen.bit_generator.state,
            "torch_rng": torch.get_rng_state(),  # dropout masks continue as if uninterrupted
            "epoch_perm": self._epoch_perm,
            "rows": self.rows,
            "dev": self.dev.state() if self.dev is not None else None,
            "config_key": self.config_key,
        }
        path = self.checkpoint_path()
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        self._last_checkpoint = time.perf_counter()
        log.info("checkpoint at step %d of %d: %s", step, self.total_steps, path)

    def load_checkpoint(self, gen: np.random.Generator) -> int:
        """Restore a run from ``checkpoint.pt``; returns the step it had reached."""
        path = self.checkpoint_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise ValueError(f"cannot resume: {path} is unreadable ({exc})") from None
        if state["config_key"] != self.config_key:
            diff = sorted(
                k for k in self.config_key if state["config_key"].get(k) != self.config_key[k]
            )
            raise ValueError(
                f"cannot resume from {path}: it was made with other settings ({', '.join(diff)})"
                "; use the same flags, or another --out"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.total_steps = state["total_steps"]
        self.plan.update(state["plan"])
        self.sched.load_state_dict(state["sched"])
        gen.bit_generator.state = state["gen"]
        torch.set_rng_state(state["torch_rng"])
        self._epoch_perm = state["epoch_perm"]
        self.rows = list(state["rows"])
        self.position = tuple(state["position"])
        self._seconds_before = float(state["train_seconds"])
        if self.dev is not None and state["dev"] is not None:
            self.dev.restore(state["dev"])
        with open(self.log_path, "w", encoding="utf-8") as fh:  # the log up to the checkpoint
            fh.writelines(json.dumps(row) + "\n" for row in self.rows)
        log.info("resumed %s at step %d of %d", path, state["step"], self.total_steps)
        return int(state["step"])

    # ------------------------------------------------------------ the loop
    def run(self, resume: bool = False) -> int:
        """Validate (and dev-check) the starting student, train, checking every ``eval_every``
        steps and at the last; returns the number of steps taken. With ``resume`` and a
        checkpoint in the output directory, continue from it. Raises ``Paused`` (after a
        checkpoint) when ``segment_seconds`` is up or on SIGINT/SIGTERM."""
        cfg, model = self.cfg, self.model
        gen = np.random.default_rng(cfg.seed + 1)
        step = 0
        if resume and self.checkpoint_path().is_file():
            step = self.load_checkpoint(gen)
        else:
            self.log_path.write_text("")
            self._record_val(0)
            if self.dev is not None:
                self.record(self.dev.check(model, 0))
        model.train()
        self._segment_started = self._last_checkpoint = time.perf_counter()
        self._segment_start_step = step
        stop: list[str] = []
        handlers = _on_signals(lambda name: stop.append(name))
        bar = tqdm(total=self.total_steps, initial=step, desc="distilling", unit="step",
                   disable=not cfg.progress)  # fmt: skip
        try:
            for epoch, b, idx in self._epochs(gen):
                if step >= self.total_steps:
                    break
                self._fit_time_budget(step, bar)
                loss, per = self.batch_loss(
                    idx, self._negatives(gen, idx), cfg.max_seq_len, mine=True
                )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                self.opt.step()
                self.sched.step()
                step += 1
                self.position = (epoch, b + 1)
                bar.update(1)
                self.record(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": step / self.steps_per_epoch,
                        "loss": float(loss.detach()),
                        "lr": self.sched.get_last_lr()[0],
                        "cos": {str(d): round(c, 5) for d, c in per.items()},
                        "elapsed_s": round(self.elapsed(), 2),
                    }
                )
                at_check = step % cfg.eval_every == 0 or step == self.total_steps
                if self.data.n_val and at_check:
                    val_loss = self._record_val(step)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{val_loss:.4f}")
                if self.dev is not None and at_check:
                    self.record(self.dev.check(model, step))
                if step >= self.total_steps:
                    break
                reason = self._pause_reason(stop)
                if reason:
                    self.save_checkpoint(step, gen)
                    raise Paused(step, self.total_steps, reason)
                if cfg.checkpoint_every_s and (
                    time.perf_counter() - self._last_checkpoint >= cfg.checkpoint_every_s
                ):
                    self.save_checkpoint(step, gen)
        finally:
            bar.close()
            _restore_signals(handlers)
        self.train_seconds = self.elapsed()
        if cfg.checkpoint_every_s:  # the finished state, for a later continuation
            self.save_checkpoint(step, gen)
        return step

    def _pause_reason(self, stop: list[str]) -> str:
        if stop:
            return f"{stop[0]} received"
        segment = self.cfg.segment_seconds
        if segment and time.perf_counter() - self._segment_started >= segment:
            return f"segment of {segment:.0f} s over"
        return ""


def _on_signals(callback: Callable[[str], None]) -> dict[int, object]:
    """Turn SIGINT/SIGTERM into a request to checkpoint and stop (main thread only)."""
    old: dict[int, object] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda signum, _f: callback(signal.Signals(signum).name))
    except ValueError:  # not the main thread: signals stay as they were
        pass
    return old


def _restore_signals(old: dict[int, object]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
