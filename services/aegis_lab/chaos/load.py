"""Load with bookkeeping: every request is counted once as succeeded, failed or wrong.

Closed-loop runs reuse the benchmark driver (bench/driver.py); `offer` is the open-loop
variant for overload (a fixed arrival rate, bounded in flight and in count). Every reply is
checked against the oracle, so a lost or swapped vector shows up in `wrong_or_lost`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from aegis_client import AegisError, AsyncEmbedClient
from aegis_lab.bench.driver import run_load
from aegis_lab.chaos.oracle import Oracle


@dataclass
class Tally:
    """Outcome counts of one scenario's requests."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    wrong_or_lost: int = 0  # rows whose vector is not the reference of its text, or missing
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    fallback: int = 0
    fallback_indices: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    # (start, seconds) of every request, monotonic clock: latency around a fault.
    timings: list[tuple[float, float]] = field(default_factory=list)

    def p99_s(self, start: float = float("-inf"), stop: float = float("inf")) -> float:
        """99th percentile latency of the requests started in [start, stop)."""
        values = sorted(s for t, s in self.timings if start <= t < stop)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(0.99 * len(values)))]

    def record_error(self, exc: BaseException) -> None:
        self.failed += 1
        code = exc.code.name if isinstance(exc, AegisError) else type(exc).__name__
        self.codes[code] += 1

    def merge(self, other: Tally) -> None:
        self.sent += other.sent
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.wrong_or_lost += other.wrong_or_lost
        self.codes.update(other.codes)
        self.fallback += other.fallback
        self.wall_s += other.wall_s
        self.timings.extend(other.timings)


def verified_call(
    client: AsyncEmbedClient, oracle: Oracle, input_type: str, tally: Tally, timeout: float
) -> Callable[[int], Awaitable[int]]:
    """`call(i)`: send request i, check every row, count it; never raises."""

    async def call(i: int) -> int:
        texts = oracle.requests[i % len(oracle.requests)]
        tally.sent += 1
        started = time.monotonic()
        try:
            result = await client.embed(texts, input_type, timeout=timeout)
        except (AegisError, asyncio.TimeoutError) as exc:
            tally.record_error(exc)
            return 0
        finally:
            tally.timings.append((started, time.monotonic() - started))
        wrong = oracle.check(texts, result.embeddings)
        tally.wrong_or_lost += wrong
        if wrong:
            tally.codes["WRONG_VECTOR"] += 1
        else:
            tally.succeeded += 1
            tally.codes["OK"] += 1
        if result.fallback:
            tally.fallback += 1
            tally.fallback_indices.append(i)
            if result.encoder != "document":
                tally.codes["FALLBACK_NOT_DOCUMENT"] += 1
        return len(texts)

    return call


async def closed_loop(
    address: str,
    oracle: Oracle,
    input_type: str,
    n_requests: int,
    concurrency: int,
    *,
    during: Callable[[Tally], Awaitable[None]] | None = None,
    timeout: float = 30.0,
    max_seconds: float = 300.0,
    label: str = "",
    progress: bool = True,
    max_attempts: int = 1,
    options: list[tuple[str, object]] | None = None,
) -> Tally:
    """`concurrency` callers, one request each in flight; `during(tally)` runs alongside
    (the fault), and the run ends when both are done.

    One attempt per request by default: the suite counts what the service answers (shed
    load, failed replicas), not what a retrying client would hide; the gateway-restart
    scenario tests the client's retries themselves."""
    tally = Tally()
    async with AsyncEmbedClient(
        address, timeout=timeout, max_attempts=max_attempts, options=options
    ) as client:
        call = verified_call(client, oracle, input_type, tally, timeout)
        start = time.perf_counter()
        load = run_load(call, n_requests, concurrency, max_seconds=max_seconds, label=label,
                        progress=progress)  # fmt: skip
        if during is None:
            await load
        else:
            await asyncio.gather(load, during(tally))
        tally.wall_s = time.perf_counter() - start
    return tally


async def offer(
    address: str,
    oracle: Oracle,
    input_type: str,
    rate_per_s: float,
    n_requests: int,
    max_in_flight: int,
    *,
    timeout: float = 60.0,
    label: str = "",
    progress: bool = True,
) -> tuple[Tally, float]:
    """Open loop: start request i at i/rate seconds (waiting only when `max_in_flight` are
    outstanding). Returns the tally and the rate actually offered."""
    tally = Tally()
    slots = asyncio.Semaphore(max_in_flight)
    bar = tqdm(total=n_requests, desc=label, disable=not progress, leave=False)
    # One attempt per request: the suite counts what the service answers (shed load, failed
    # replicas), not what a retrying client would hide.
    async with AsyncEmbedClient(address, timeout=timeout, max_attempts=1) as client:
        call = verified_call(client, oracle, input_type, tally, timeout)

        async def one(i: int) -> None:
            try:
                await call(i)
            finally:
                slots.release()
                bar.update(1)

        tasks = []
        start = time.perf_counter()
        for i in range(n_requests):
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(i)))
        offered_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
        tally.wall_s = time.perf_counter() - start
    bar.close()
    return tally, n_requests / offered_s if offered_s else float("inf")
