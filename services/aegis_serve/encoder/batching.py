"""Dynamic batching: a bounded queue of texts, cut into token-budget batches.

Kept apart from the model (as TEI keeps its queue and `infer` loop apart from backends):
the batcher only needs something that can `collate` tokenized texts and run `forward`.
Every iteration takes the pending texts of the oldest request's depth, sorts them by
length (little padding), cuts them into batches whose *padded* size fits the token budget,
and runs the batch holding the oldest text (fairness). Texts of cancelled or expired
requests are dropped before they reach the model. One model thread runs the forwards,
so the event loop keeps accepting and tokenizing requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aegis_serve.models.embedder import TokenizedText

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The bounded queue cannot take the request; the caller should back off."""


class DeadlineExpired(Exception):
    """The request's deadline passed before its texts reached the model."""


class BatchFailed(Exception):
    """The model failed on a batch holding this request's texts."""


class Runner(Protocol):
    """What the batcher needs from a model."""

    def collate(self, items: Sequence[TokenizedText]) -> Any: ...

    def forward(self, batch: Any, layers: int = 0) -> np.ndarray: ...


@dataclass(eq=False)
class Job:
    """One Encode call: its texts share a deadline and a fate."""

    items: Sequence[TokenizedText]
    layers: int
    deadline: float | None
    future: asyncio.Future[Job]
    tag: object = None  # opaque to the batcher: the observer's handle (a span context)
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    enqueued_wall_ns: int = field(default_factory=time.time_ns)
    batch_tags: list[Any] = field(default_factory=list)  # observer's note per batch served
    rows: np.ndarray | None = None
    remaining: int = 0
    cancelled: bool = False
    queue_ns: int = 0
    inference_ns: int = 0

    @property
    def done(self) -> bool:
        return self.cancelled or self.future.done()


@dataclass(eq=False)
class Slot:
    """One text of a job waiting for a batch."""

    job: Job
    index: int
    length: int
    seq: int


@dataclass
class BatcherStats:
    """Running totals, read by metrics and benchmarks."""

    batches: int = 0
    texts: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    dropped_texts: int = 0
    split_batches: int = 0


@dataclass(frozen=True)
class BatchRecord:
    """One finished forward pass, as observers (metrics, traces) see it."""

    texts: int
    real_tokens: int
    padded_tokens: int
    layers: int
    start_wall_ns: int
    end_wall_ns: int
    jobs: tuple[Job, ...]
    failed: bool = False


class BatchObserver(Protocol):
    """Hooks for telemetry; called on the event loop, must be cheap and must not raise."""

    def on_batch(self, record: BatchRecord) -> None: ...

    def on_drop(self, texts: int, reason: str) -> None: ...


def plan_batches(
    slots: Sequence[Slot],
    max_batch_tokens: int,
    max_batch_texts: int,
    max_padding_ratio: float = 1.3,
    padding_slack: int = 16,
    packed: bool = False,
) -> list[list[Slot]]:
    """Cut length-sorted slots into batches: padded size within the token budget, and
    padding bounded (length bucketing), so mixed lengths don't pad short texts to long ones.

    A text joins the current batch only if the padded batch stays within `max_batch_tokens`
    and within `max_padding_ratio` of the real tokens (or its length is within
    `padding_slack` tokens of the batch's shortest). A text longer than the whole budget
    still gets a batch of its own.
    """
    batches: list[list[Slot]] = []
    current: list[Slot] = []
    real = 0
    for slot in sorted(slots, key=lambda s: (s.length, s.seq)):
        if current:
            padded = (len(current) + 1) * slot.length
            cost = real + slot.length if packed else padded
            fits = cost <= max_batch_tokens and len(current) < max_batch_texts
            even = (
                packed
                or padded <= max_padding_ratio * (real + slot.length)
                or slot.length - current[0].length <= padding_slack
            )
            if not (fits and even):
                batches.append(current)
                current, real = [], 0
        current.append(slot)
        real += slot.length
    if current:
        batches.append(current)
    return batches


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Batcher:
    """Bounded queue + batching loop in front of one Runner."""

    def __init__(
        self,
        runner: Runner,
        dim: int,
        *,
        max_batch_tokens: int = 16384,
        max_batch_texts: int = 256,
        max_queue_texts: int = 4096,
        wait_s: float = 0.0,
        observer: BatchObserver | None = None,
    ) -> None:
        self.runner = runner
        self.observer = observer
        self.dim = dim
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_texts = max_batch_texts
        self.max_queue_texts = max_queue_texts
        self.wait_s = wait_s
        self.stats = BatcherStats()
        self._pending: list[Slot] = []
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- public
    @property
    def queued_texts(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        """The batching loop is up: started, not closed, not crashed."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for slot in self._pending:
            if not slot.job.future.done():
                slot.job.future.set_exception(BatchFailed("encoder shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(
        self,
        items: Sequence[TokenizedText],
        layers: int = 0,
        deadline: float | None = None,
        tag: object = None,
    ) -> Job:
        """Queue the texts; resolve when all rows are embedded (or raise)."""
        if not items:
            raise ValueError("no texts")
        if len(self._pending) + len(items) > self.max_queue_texts:
            raise QueueFull(
                f"encoder queue is full ({len(self._pending)} texts waiting, "
                f"limit {self.max_queue_texts}); retry with backoff"
            )
        loop = asyncio.get_running_loop()
        job = Job(
            items=items, layers=layers, deadline=deadline, future=loop.create_future(), tag=tag
        )
        job.rows = np.empty((len(items), self.dim), dtype=np.float32)
        job.remaining = len(items)
        for i, it in enumerate(items):
            self._seq += 1
            self._pending.append(Slot(job, i, len(it.ids), self._seq))
        self._wakeup.set()
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            job.cancelled = True  # its texts are dropped before the next batch
            raise

    # ------------------------------------------------------------------ loop
    def _drop_reason(self, slot: Slot, now: float) -> str | None:
        """Why this text must not reach the model (None: it still should)."""
        job = slot.job
        if job.cancelled:
            return "cancelled"
        if job.future.done():
            return "failed"  # another batch holding its texts failed
        if job.deadline is not None and now > job.deadline:
            job.future.set_exception(DeadlineExpired("deadline expired while queued"))
            return "expired"
        return None

    def _prune(self) -> None:
        now = asyncio.get_running_loop().time()
        kept: list[Slot] = []
        dropped: Counter[str] = Counter()
        for slot in self._pending:
            reason = self._drop_reason(slot, now)
            if reason is None:
                kept.append(slot)
            else:
                dropped[reason] += 1
        self.stats.dropped_texts += len(self._pending) - len(kept)
        self._pending = kept
        if self.observer is not None:
            for reason, n in dropped.items():
                self.observer.on_drop(n, reason)

    def _next_batch(self) -> tuple[list[Slot], int]:
        oldest = min(self._pending, key=lambda s: s.seq)
        layers = oldest.job.layers
        same_depth = [s for s in self._pending if s.job.layers == layers]
        packed = bool(getattr(self.runner, "packs_sequences", False))
        for batch in plan_batches(
            same_depth, self.max_batch_tokens, self.max_batch_texts, packed=packed
        ):
            if oldest in batch:
                return batch, layers
        raise AssertionError("oldest slot not planned")  # pragma: no cover

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.wait_s:
                await asyncio.sleep(self.wait_s)
            self._prune()
            if not self._pending:
                self._wakeup.clear()
                continue
            batch, layers = self._next_batch()
            taken = set(map(id, batch))
            self._pending = [s for s in self._pending if id(s) not in taken]
            await self._run(batch, layers)

    def _observe(
        self,
        batch: list[Slot],
        items: list[TokenizedText],
        layers: int,
        start_wall: int,
        failed: bool = False,
    ) -> tuple[int, int]:
        """(real, padded) tokens of the batch; tells the observer about it."""
        real = sum(len(it.ids) for it in items)
        width = max(len(it.ids) for it in items)
        if getattr(self.runner, "packs_sequences", False):
            width = -(-real // len(items))
        if self.observer is not None:
            jobs = tuple({id(s.job): s.job for s in batch}.values())
            record = BatchRecord(len(batch), real, width * len(batch), layers, start_wall,
                                 time.time_ns(), jobs, failed)  # fmt: skip
            try:
                self.observer.on_batch(record)
            except Exception:  # telemetry must never fail a batch
                log.warning("batch observer failed", exc_info=True)
        return real, width * len(batch)

    async def _run(self, batch: list[Slot], layers: int) -> None:
        started = time.perf_counter_ns()
        start_wall = time.time_ns()
        items = [s.job.items[s.index] for s in batch]
        loop = asyncio.get_running_loop()
        try:
            matrix = await loop.run_in_executor(self._executor, self._forward, items, layers)
        except Exception as exc:  # the model failed: fail only this batch's requests
            log.exception("batch of %d texts failed", len(batch))
            self._observe(batch, items, layers, start_wall, failed=True)
            for job in {s.job for s in batch}:
                if not job.future.done():
                    job.future.set_exception(BatchFailed(f"{type(exc).__name__}: {exc}"))
            return
        elapsed = time.perf_counter_ns() - started
        real, padded = self._observe(batch, items, layers, start_wall)
        self.stats.batches += 1
        self.stats.texts += len(batch)
        self.stats.real_tokens += real
        self.stats.padded_tokens += padded
        seen: set[int] = set()
        for slot, row in zip(batch, matrix, strict=True):
            job = slot.job
            if job.future.done():
                continue
            assert job.rows is not None
            job.rows[slot.index] = row
            job.remaining -= 1
            if id(job) not in seen:
                seen.add(id(job))
                job.queue_ns = max(job.queue_ns, started - job.enqueued_ns)
                job.inference_ns += elapsed
            if job.remaining == 0:
                job.future.set_result(job)

    def _forward(self, items: list[TokenizedText], layers: int) -> np.ndarray:
        """Run on the model thread; halve the batch on out-of-memory instead of failing."""
        try:
            return self.runner.forward(self.runner.collate(items), layers)
        except Exception as exc:
            if not _is_oom(exc) or len(items) == 1:
                raise
        self.stats.split_batches += 1
        _free_accelerator_cache()
        half = len(items) // 2
        log.warning("out of memory on %d texts; splitting the batch", len(items))
        return np.concatenate(
            [self._forward(items[:half], layers), self._forward(items[half:], layers)]
        )


def _free_accelerator_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass
