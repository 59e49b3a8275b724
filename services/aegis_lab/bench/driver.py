"""Closed-loop load driver: N workers keep one request each in flight (127.0.0.1 only).

Bounded by request count and wall time, so every run stops by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm


@dataclass
class LoadResult:
    """Latencies (seconds) of the completed requests and the wall time of the run."""

    latencies: list[float]
    wall_s: float
    errors: int
    units: int  # documents / queries completed

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")

    @property
    def units_per_s(self) -> float:
        return self.units / self.wall_s if self.wall_s else 0.0


async def run_load(
    call: Callable[[int], Awaitable[int]],
    n_requests: int,
    concurrency: int,
    *,
    max_seconds: float = 120.0,
    label: str = "",
    progress: bool = True,
) -> LoadResult:
    """Issue `call(i)` for i in range(n_requests) with `concurrency` in flight.

    `call` returns how many units (docs, queries) the request carried.
    """
    latencies: list[float] = []
    errors = 0
    units = 0
    next_index = 0
    deadline = time.monotonic() + max_seconds
    bar = tqdm(total=n_requests, desc=label, disable=not progress, leave=False)

    async def worker() -> None:
        nonlocal next_index, errors, units
        while next_index < n_requests and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            try:
                done = await call(i)  # not `units += await …`: that reads `units` before awaiting
                units += done
                latencies.append(time.perf_counter() - start)
            except Exception:
                errors += 1
            bar.update(1)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    bar.close()
    return LoadResult(latencies, wall, errors, units)


def chunks(seq: Sequence[str], size: int) -> list[list[str]]:
    return [list(seq[i : i + size]) for i in range(0, len(seq), size)]
