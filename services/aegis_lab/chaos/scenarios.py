"""The process-level fault scenarios: each injects one fault into a whole fleet under load.

A scenario starts from a complete, healthy fleet (the runner restores it), runs bounded
load, injects its fault part-way, and returns an Outcome with counts and the checks the
fault must pass. The same functions serve the CLI (`aegis-lab chaos`, long sizes) and
the CI tests (short sizes).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aegis_lab.chaos.fleet import READY_TIMEOUT_S, Fleet, MemorySampler, rss_mb
from aegis_lab.chaos.load import Tally, closed_loop, offer
from aegis_lab.chaos.oracle import Oracle, ReferenceModel

# Growth of a process's resident memory under 10x overload that we still call bounded.
RSS_GROWTH_LIMIT_MB = 300.0
DEFINED_OVERLOAD = "RESOURCE_EXHAUSTED"
OVERLOAD_TEXTS_PER_REQUEST = 2
OVERLOAD_TOKENS = (16, 128)  # longer than the other scenarios' texts: the model is the bottleneck
# Hung replica: how long the gateway may take to eject it, and how long it stays stopped after.
HUNG_EJECT_LIMIT_S = 20.0
# Stopped this long after leaving rotation: past the second failed probe (interval + probe
# timeout), so the calls it holds must have been ended and retried before SIGCONT.
HUNG_HOLD_S = 6.0
# The load's per-request deadline (closed_loop's default timeout).
LOAD_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Size:
    """How much load: `short` fits CI on two cores, `long` produces the report."""

    requests: int  # per fault scenario
    concurrency: int
    texts_per_request: int
    capacity_requests: int  # closed-loop run that measures capacity before overload
    overload_seconds: float  # offered at 10x capacity for about this long
    overload_max: int  # ... but never more requests than this
    overload_in_flight: int
    recovery_requests: int
    fuzz_examples: int  # per fuzzed RPC (Embed, Tokenize, EmbedStream, raw bytes)
    malformed_per_class: int = 2  # variants of each named malformed-input class (malformed.py)
    soak_seconds: float = 20.0  # steady half-capacity load (`--soak`: 30 minutes)


SHORT = Size(
    requests=48, concurrency=6, texts_per_request=2, capacity_requests=24,
    overload_seconds=2.0, overload_max=160, overload_in_flight=96, recovery_requests=12,
    fuzz_examples=40, soak_seconds=20.0, malformed_per_class=2,
)  # fmt: skip
LONG = Size(
    requests=2000, concurrency=8, texts_per_request=2, capacity_requests=120,
    overload_seconds=10.0, overload_max=2000, overload_in_flight=256, recovery_requests=100,
    fuzz_examples=500, soak_seconds=180.0, malformed_per_class=300,
)  # fmt: skip
SOAK_SECONDS = 1800.0  # `aegis-lab chaos --soak`: the 30-minute form (not in CI)
# Soak limits: resident memory may grow at most this much after warm-up, and the late p99 may
# be at most this factor (plus a small absolute slack for 2-core timer noise) of the early p99.
SOAK_RSS_GROWTH = 0.05
SOAK_WARMUP = 0.2
SOAK_P99_FACTOR = 1.5
SOAK_P99_SLACK_S = 0.05


@dataclass
class Context:
    """What every scenario gets."""

    fleet: Fleet
    reference: ReferenceModel
    size: Size
    progress: bool = False
    seed: int = 0


@dataclass
class Outcome:
    """A scenario's figures and the checks that decide whether it passed."""

    test: str
    tally: Tally
    max_rss_mb: float
    rejected: int = 0  # answered with a defined status (RESOURCE_EXHAUSTED, INVALID_ARGUMENT)
    skipped: str = ""  # why the scenario could not run on this machine (then no checks)
    checks: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Requests that got neither a correct result nor a defined rejection."""
        return self.tally.failed - self.rejected

    @property
    def passed(self) -> bool:
        return all(self.checks.values())

    def row(self, command: str) -> dict[str, Any]:
        return {
            "test": self.test,
            "requests": self.tally.sent,
            "succeeded": self.tally.succeeded,
            "rejected": self.rejected,
            "failed": self.failed,
            "wrong_or_lost": self.tally.wrong_or_lost,
            "max_rss_mb": round(self.max_rss_mb, 1),
            "passed": self.passed,
            "skipped": self.skipped,
            "command": command,
            "checks": self.checks,
            "details": self.details,
        }


async def _when_sent(tally: Tally, n: int, limit_s: float = 300.0) -> None:
    """Wait until `n` requests were sent (the fault goes in mid-load)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while tally.sent < n and loop.time() < deadline:
        await asyncio.sleep(0.005)


def _oracle(ctx: Context, n: int, per: int, tokens: tuple[int, int], salt: int) -> Oracle:
    return ctx.reference.oracle(n, per, seed=ctx.seed * 100 + salt, tokens=tokens)


async def _fault_under_load(
    ctx: Context,
    oracle: Oracle,
    input_type: str,
    fault: Callable[[], Awaitable[None] | None],
    label: str,
    *,
    address: str = "",
    **load: Any,
) -> tuple[Tally, float, int]:
    """Closed-loop load (through `address`, default the fleet's gateway; `load`: more
    closed_loop options); `fault()` after a third of it — a coroutine goes on beside the load
    (a fault with a recovery). Returns tally, peak RSS, requests sent when the fault began."""
    n = len(oracle.requests)
    at_fault = {"sent": 0}

    async def inject(tally: Tally) -> None:
        await _when_sent(tally, n // 3)
        at_fault["sent"] = tally.sent
        started = fault()
        if started is not None:
            await started

    with MemorySampler(ctx.fleet) as mem:
        tally = await closed_loop(address or ctx.fleet.address, oracle, input_type, n,
                                  ctx.size.concurrency, during=inject, label=label,
                                  progress=ctx.progress, **load)  # fmt: skip
    return tally, mem.max_mb, at_fault["sent"]


# ------------------------------------------------------------------ scenarios
async def kill_document_replica(ctx: Context) -> Outcome:
    """kill -9 one of two document replicas mid-load: nothing lost, nothing swapped."""
    s = ctx.size
    oracle = _oracle(ctx, s.requests, s.texts_per_request, (8, 96), salt=1)
    victim = ctx.fleet.encoders["document1"]
    tally, peak, at = await _fault_under_load(
        ctx, oracle, "document", lambda: victim.signal(signal.SIGKILL), "kill -9 document1"
    )
    code = victim.wait(10)
    return Outcome(
        "kill -9 document replica",
        tally,
        peak,
        checks={
            "victim was killed": code == -signal.SIGKILL,
            "every request answered": tally.succeeded + tally.failed == tally.sent == s.requests,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
        },
        details={"fault_after_requests": at, "codes": dict(tally.codes), "victim_exit": code},
    )


async def sigterm_document_replica(ctx: Context) -> Outcome:
    """SIGTERM one of two document replicas mid-load: it drains, no request fails."""
    s = ctx.size
    oracle = _oracle(ctx, s.requests, s.texts_per_request, (8, 96), salt=2)
    victim = ctx.fleet.encoders["document1"]
    tally, peak, at = await _fault_under_load(
        ctx, oracle, "document", lambda: victim.signal(signal.SIGTERM), "SIGTERM document1"
    )
    code = victim.wait(ctx.fleet.cfg.shutdown_grace_s + 10)
    return Outcome(
        "SIGTERM document replica",
        tally,
        peak,
        checks={
            "victim exited 0": code == 0,
            "every request answered": tally.succeeded + tally.failed == tally.sent == s.requests,
            "failed == 0": tally.failed == 0,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
        },
        details={"fault_after_requests": at, "codes": dict(tally.codes), "victim_exit": code},
    )


async def query_pool_down(ctx: Context) -> Outcome:
    """kill -9 the whole query pool mid-load: queries go on, served by the document pool."""
    s = ctx.size
    oracle = _oracle(ctx, s.requests, 1, (4, 16), salt=3)
    victim = ctx.fleet.encoders["query"]
    tally, peak, at = await _fault_under_load(
        ctx, oracle, "query", lambda: victim.signal(signal.SIGKILL), "query pool down"
    )
    # Requests started after the kill (plus the ones already in flight) must all fall back.
    late = set(range(at + s.concurrency, s.requests))
    not_fallback_late = len(late - set(tally.fallback_indices))
    return Outcome(
        "query pool down (fallback)",
        tally,
        peak,
        checks={
            "every request answered": tally.succeeded + tally.failed == tally.sent == s.requests,
            "failed == 0": tally.failed == 0,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
            "requests after the kill served with fallback": not_fallback_late == 0,
            "fallback answers come from the document pool": not tally.codes.get(
                "FALLBACK_NOT_DOCUMENT"
            ),
        },
        details={
            "fault_after_requests": at,
            "fallback": tally.fallback,
            "late_not_fallback": not_fallback_late,
            "codes": dict(tally.codes),
        },
    )


async def fuzz(ctx: Context) -> Outcome:
    """Hypothesis over every request field plus raw bytes, then every named malformed-input
    class (chaos/malformed.py) many times: only defined answers, each class its documented
    status, no crash, memory bounded."""
    from aegis_lab.chaos.fuzz import run_fuzz
    from aegis_lab.chaos.malformed import CLASSES, OK, run_classes

    fleet = ctx.fleet
    before = {m.name: rss_mb(m.pid) for m in fleet.members if m.alive}
    with MemorySampler(fleet) as mem:
        per_rpc = await asyncio.to_thread(run_fuzz, fleet.address, ctx.size.fuzz_examples,
                                          ctx.seed)  # fmt: skip
        per_class = await asyncio.to_thread(run_classes, fleet.address,
                                            ctx.size.malformed_per_class, ctx.seed)  # fmt: skip
    growth = {name: mem.peak_mb.get(name, 0.0) - before.get(name, 0.0) for name in before}
    crashed = fleet.crashed()
    after = await closed_loop(
        fleet.address, _oracle(ctx, 4, 2, (4, 32), salt=5), "query", 4, 1, progress=ctx.progress
    )
    tally = Tally()
    rejected = malformed = 0
    for t in per_rpc.values():
        tally.sent += t.sent
        tally.succeeded += t.ok - t.malformed
        tally.failed += t.failed - t.malformed + t.rejected
        tally.wrong_or_lost += t.malformed
        tally.codes.update(t.codes)
        rejected += t.rejected
        malformed += t.malformed
    for c in per_class.values():
        ok = c.codes.get(OK, 0)
        tally.sent += c.sent
        tally.succeeded += ok
        tally.failed += c.sent - ok
        tally.codes.update(c.codes)
        rejected += c.sent - ok - c.unexpected
    return Outcome(
        "fuzz (hypothesis + raw bytes + malformed classes)",
        tally,
        mem.max_mb,
        rejected=rejected,
        checks={
            "only successes or defined statuses": tally.failed == rejected,
            "every success well-formed": malformed == 0,
            "every malformed class got its documented status": all(
                c.passed for c in per_class.values()
            ),
            f"{len(CLASSES)} >= 30 malformed classes": len(CLASSES) >= 30,
            f"memory bounded (growth <= {RSS_GROWTH_LIMIT_MB:.0f} MB per process)": all(
                g <= RSS_GROWTH_LIMIT_MB for g in growth.values()
            ),
            "no process crashed": not crashed,
            "answers normally afterwards": after.succeeded == 4,
        },
        details={
            "per_rpc": {
                k: {"sent": t.sent, "codes": dict(t.codes), "failures": t.examples}
                for k, t in per_rpc.items()
            },
            "malformed_classes": _class_rows(per_class),
            "rss_growth_mb": {k: round(v, 1) for k, v in growth.items()},
            "crashed": crashed,
            "seed": ctx.seed,
        },
    )


def _class_rows(per_class: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's line per malformed-input class: its documented statuses and what came."""
    from aegis_lab.chaos.malformed import CLASSES

    rows = {}
    for c in CLASSES:
        t = per_class[c.name]
        row = {"sent": t.sent, "documented": sorted(c.expected), "codes": dict(t.codes),
               "passed": t.passed}  # fmt: skip
        if t.examples:
            row["examples"] = t.examples
        rows[c.name] = row
    return rows


async def overload(ctx: Context) -> Outcome:
    """Offer ~10x measured capacity: results or RESOURCE_EXHAUSTED only, memory bounded,
    and the service answers normally afterwards."""
    s = ctx.size
    fleet = ctx.fleet
    per = OVERLOAD_TEXTS_PER_REQUEST
    cap_oracle = _oracle(ctx, s.capacity_requests, per, OVERLOAD_TOKENS, salt=4)
    cap = await closed_loop(fleet.address, cap_oracle, "document", s.capacity_requests, 4,
                            label="capacity", progress=ctx.progress)  # fmt: skip
    capacity = cap.succeeded / cap.wall_s if cap.wall_s else 0.0
    rate = max(1.0, 10 * capacity)
    n_over = min(s.overload_max, max(1, round(rate * s.overload_seconds)))
    over_oracle = _oracle(ctx, n_over, per, OVERLOAD_TOKENS, salt=6)
    rec_oracle = _oracle(ctx, s.recovery_requests, per, OVERLOAD_TOKENS, salt=7)
    before = {m.name: rss_mb(m.pid) for m in fleet.members if m.alive}
    with MemorySampler(fleet) as mem:
        tally, offered = await offer(fleet.address, over_oracle, "document", rate, n_over,
                                     s.overload_in_flight, label="10x overload",
                                     progress=ctx.progress)  # fmt: skip
    hwm = {m.name: rss_mb(m.pid, "VmHWM") for m in fleet.members if m.alive}
    growth = {name: mem.peak_mb.get(name, 0.0) - before.get(name, 0.0) for name in before}
    recovery = await closed_loop(fleet.address, rec_oracle, "document", s.recovery_requests, 2,
                                 label="recovery", progress=ctx.progress)  # fmt: skip
    shed = tally.codes.get(DEFINED_OVERLOAD, 0)
    return Outcome(
        "overload 10x capacity",
        tally,
        max(mem.max_mb, *hwm.values()),
        rejected=shed,
        checks={
            "only results or RESOURCE_EXHAUSTED": tally.failed == shed,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
            f"RSS growth <= {RSS_GROWTH_LIMIT_MB:.0f} MB per process": all(
                g <= RSS_GROWTH_LIMIT_MB for g in growth.values()
            ),
            "no process died": not fleet.crashed(),
            "recovered (follow-up all succeed)": recovery.succeeded == s.recovery_requests
            and recovery.wrong_or_lost == 0,
        },
        details={
            "capacity_req_per_s": round(capacity, 1),
            "target_req_per_s": round(rate, 1),
            "offered_req_per_s": round(offered, 1),
            "texts_per_request": per,
            "max_in_flight": s.overload_in_flight,
            "codes": dict(tally.codes),
            "rss_before_mb": {k: round(v, 1) for k, v in before.items()},
            "rss_growth_mb": {k: round(v, 1) for k, v in growth.items()},
            "vm_hwm_mb": {k: round(v, 1) for k, v in hwm.items()},
            "recovery": {
                "sent": recovery.sent,
                "succeeded": recovery.succeeded,
                "codes": dict(recovery.codes),
            },
        },
    )


async def gateway_restart(ctx: Context) -> Outcome:
    """Two gateways behind the client's round robin; kill -9 one mid-load and start it again:
    the client's retry policy (UNAVAILABLE, idempotent Embed) carries every request that was
    on it to the other gateway."""
    s = ctx.size
    fleet = ctx.fleet
    oracle = _oracle(ctx, s.requests, s.texts_per_request, (8, 96), salt=10)
    victim = fleet.gateway2
    assert victim is not None
    marks: dict[str, Any] = {}

    async def fault() -> None:
        marks["killed"] = time.monotonic()
        victim.signal(signal.SIGKILL)
        marks["exit"] = await asyncio.to_thread(victim.wait, 10)
        started = time.monotonic()
        await asyncio.to_thread(lambda: victim.start().wait_ready(READY_TIMEOUT_S))
        marks["restarted_after_s"] = round(time.monotonic() - started, 2)
        marks["back"] = time.monotonic()

    tally, peak, at = await _fault_under_load(
        ctx, oracle, "document", fault, "kill -9 gateway2", address=fleet.both_gateways,
        max_attempts=4, options=[("grpc.lb_policy_name", "round_robin")],
    )  # fmt: skip
    killed, back = marks.get("killed", 0.0), marks.get("back", 0.0)
    return Outcome(
        "gateway restart (kill -9, 2 gateways, client retries)",
        tally,
        peak,
        checks={
            "victim was killed": marks.get("exit") == -signal.SIGKILL,
            "victim restarted": victim.alive,
            "every request answered": tally.succeeded + tally.failed == tally.sent == s.requests,
            "failed == 0": tally.failed == 0,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
        },
        details={
            "fault_after_requests": at,
            "restarted_after_s": marks.get("restarted_after_s"),
            "p99_while_down_s": round(tally.p99_s(killed, back), 3),
            "p99_overall_s": round(tally.p99_s(), 3),
            "codes": dict(tally.codes),
        },
    )


async def soak(ctx: Context) -> Outcome:
    """Steady load at half the measured capacity for `soak_seconds` through the whole stack
    (queries and documents): RSS of every process sampled each second must not grow more
    than 5 % after the warm-up, the p99 must stay put, nothing may fail or be lost."""
    s = ctx.size
    fleet = ctx.fleet
    per = s.texts_per_request
    cap_oracle = _oracle(ctx, s.capacity_requests, per, (8, 96), salt=11)
    cap = await closed_loop(fleet.address, cap_oracle, "document", s.capacity_requests,
                            s.concurrency, label="capacity", progress=ctx.progress)  # fmt: skip
    capacity = cap.succeeded / cap.wall_s if cap.wall_s else 1.0
    rate = max(1.0, capacity / 2)
    n = max(1, round(rate * s.soak_seconds))
    # Distinct requests, reused cyclically: the oracle's references cost model time too.
    doc_oracle = _oracle(ctx, min(n, 400), per, (8, 96), salt=12)
    query_oracle = _oracle(ctx, min(n, 400), 1, (4, 16), salt=13)
    with MemorySampler(fleet, every_s=0.5, series_every_s=1.0) as mem:
        start = time.monotonic()
        (docs, offered), (queries, _) = await asyncio.gather(
            offer(fleet.address, doc_oracle, "document", rate * 0.8, round(n * 0.8), 64,
                  label="soak documents", progress=ctx.progress),
            offer(fleet.address, query_oracle, "query", rate * 0.2, round(n * 0.2), 64,
                  label="soak queries", progress=ctx.progress),
        )  # fmt: skip
        end = time.monotonic()
    tally = Tally()
    tally.merge(docs)
    tally.merge(queries)
    warm = start + SOAK_WARMUP * (end - start)
    growth = _rss_growth(mem.series, warm, end)
    third = (end - warm) / 3
    early, late = tally.p99_s(warm, warm + third), tally.p99_s(end - third, end)
    return Outcome(
        "soak at half capacity",
        tally,
        mem.max_mb,
        checks={
            "every request answered": tally.succeeded + tally.failed == tally.sent,
            "failed == 0": tally.failed == 0,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
            f"RSS growth after warm-up <= {SOAK_RSS_GROWTH:.0%}": all(
                g <= SOAK_RSS_GROWTH for g in growth.values()
            ),
            f"late p99 <= {SOAK_P99_FACTOR}x early p99": late
            <= SOAK_P99_FACTOR * early + SOAK_P99_SLACK_S,
            "no process died": not fleet.crashed(),
        },
        details={
            "seconds": round(end - start, 1),
            "capacity_req_per_s": round(capacity, 1),
            "offered_req_per_s": round(rate, 1),
            "documents_offered_req_per_s": round(offered, 1),
            "rss_growth_after_warmup": {k: round(v, 4) for k, v in growth.items()},
            "p99_early_s": round(early, 4),
            "p99_late_s": round(late, 4),
            "codes": dict(tally.codes),
        },
    )


def _rss_growth(
    series: list[tuple[float, str, float]], warm: float, end: float
) -> dict[str, float]:
    """Per member: (median RSS of the last tenth - median RSS of the tenth after warm-up) /
    the latter. Medians, so one sample caught mid-allocation does not decide."""
    span = max(end - warm, 1e-9)
    out: dict[str, float] = {}
    for name in sorted({m for _, m, _ in series}):
        head = [mb for t, m, mb in series if m == name and warm <= t < warm + span / 10]
        tail = [mb for t, m, mb in series if m == name and end - span / 10 <= t <= end]
        if head and tail and _median(head) > 0:
            out[name] = (_median(tail) - _median(head)) / _median(head)
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


PARTITION_S = 10.0
NETEM_CASES = (("delay 50 ms", ("delay", "50ms")), ("loss 1 %", ("loss", "1%")),
               ("loss 10 %", ("loss", "10%")))  # fmt: skip
NETWORK_DEFINED = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


async def bad_network(ctx: Context) -> Outcome:
    """One document replica behind a veth pair in its own network namespace; a 10-second
    partition, then 50 ms delay, 1 % and 10 % loss under load (netem cases only where the
    kernel has netem). Requests succeed or fail with a defined status within their deadline;
    no wrong vector."""
    from aegis_lab.chaos.network import NetworkUnavailable, encoder_in, namespace
    from aegis_serve.supervisor import Child, ChildFailed, serve_argv

    s, fleet = ctx.size, ctx.fleet
    per_phase = max(12, s.requests // 8)
    phases: dict[str, Any] = {}
    tally = Tally()
    peak = 0.0
    try:
        with namespace() as link:
            enc = encoder_in(link, fleet._encoder_args("document", 0), fleet.env)
            gw = Child("gateway-netns", [], fleet.env)
            try:
                try:
                    await asyncio.to_thread(lambda: enc.start().wait_ready(READY_TIMEOUT_S))
                except ChildFailed as exc:  # e.g. `ip netns exec` cannot remount /sys here
                    raise NetworkUnavailable(
                        f"no process can run in the namespace: {str(exc)[-300:]}"
                    ) from None
                # Documents balanced over the namespaced replica and one of the fleet's.
                gw.argv = serve_argv(
                    "gateway", "--port", "0", "--query", fleet.encoders["query"].address,
                    "--document", f"{enc.address},{fleet.encoders['document1'].address}",
                    "--health-interval-s", str(fleet.cfg.health_interval_s),
                    "--log-level", "WARNING",
                )  # fmt: skip
                await asyncio.to_thread(lambda: gw.start().wait_ready(READY_TIMEOUT_S))
                healthy = await _until(lambda: _is(gw.address, enc.address, True), 60)
                if healthy is None:
                    raise NetworkUnavailable("the gateway never reached the namespaced replica")

                async def phase(name: str, fault: Callable[[Tally], Awaitable[None]]) -> None:
                    oracle = _oracle(ctx, per_phase, s.texts_per_request, (8, 64),
                                     salt=20 + len(phases))  # fmt: skip
                    started = time.monotonic()
                    t = await closed_loop(gw.address, oracle, "document", per_phase,
                                          s.concurrency, during=fault, label=name,
                                          progress=ctx.progress)  # fmt: skip
                    back = await _until(lambda: _is(gw.address, enc.address, True), 60)
                    phases[name] = {
                        "requests": t.sent, "succeeded": t.succeeded, "codes": dict(t.codes),
                        "p99_s": round(t.p99_s(), 3), "seconds": round(time.monotonic() -
                        started, 1), "replica_back_after_s": _round(back),
                    }  # fmt: skip
                    tally.merge(t)

                async def partition(t: Tally) -> None:
                    link.down()
                    try:
                        await asyncio.sleep(PARTITION_S)
                    finally:
                        link.up()

                with MemorySampler(fleet) as mem:
                    await phase("partition 10 s", partition)
                    for name, spec in NETEM_CASES:
                        refused = link.netem(*spec)
                        if refused:
                            phases[name] = {"skipped": f"tc netem: {refused}"}
                            continue

                        async def hold(t: Tally) -> None:
                            await asyncio.sleep(0)

                        try:
                            await phase(name, hold)
                        finally:
                            link.clear()
                peak = mem.max_mb
            finally:
                for child in (gw, enc):
                    child.signal(signal.SIGTERM)
                    if child.proc is not None and await asyncio.to_thread(child.wait, 15) is None:
                        child.kill()
    except NetworkUnavailable as exc:
        return Outcome("bad network (netns: partition, delay, loss)", tally, 0.0,
                       skipped=str(exc))  # fmt: skip
    undefined = {c: n for c, n in tally.codes.items()
                 if c not in NETWORK_DEFINED and c not in ("OK", "WRONG_VECTOR")}  # fmt: skip
    return Outcome(
        "bad network (netns: partition, delay, loss)",
        tally,
        peak,
        rejected=tally.failed - sum(undefined.values()),
        checks={
            "every request answered": tally.succeeded + tally.failed == tally.sent,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
            "failures only with defined statuses": not undefined,
            "p99 within the deadline": tally.p99_s() < LOAD_DEADLINE_S,
        },
        details={"phases": phases, "codes": dict(tally.codes)},
    )


async def _replica_healthy(address: str, target: str) -> bool | None:
    """Whether the gateway has `target` in rotation (GetInfo's replica states); None when
    the gateway does not answer."""
    from aegis_client import AegisError, AsyncEmbedClient

    try:
        async with AsyncEmbedClient(address, timeout=5, max_attempts=1) as client:
            info = await client.info()
    except AegisError:
        return None
    for pool in info.pools:
        for state in pool.replica_states:
            if state.target == target:
                return state.healthy
    return None


async def _until(check: Callable[[], Awaitable[bool]], limit_s: float) -> float | None:
    """Seconds until `check()` holds (polled every 0.1 s), or None after `limit_s`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < limit_s:
        if await check():
            return loop.time() - start
        await asyncio.sleep(0.1)
    return None


async def _hung_replica(ctx: Context, member: str, input_type: str, test: str) -> Outcome:
    """SIGSTOP `member` under load (alive, connections open, answering nothing), keep it
    stopped a while after the gateway ejected it, SIGCONT it, and see it back in rotation:
    every request must still be answered with its right vector within its deadline."""
    s = ctx.size
    per = s.texts_per_request if input_type == "document" else 1
    tokens = (8, 96) if input_type == "document" else (4, 16)
    oracle = _oracle(ctx, s.requests, per, tokens, salt=8 if input_type == "document" else 9)
    victim = ctx.fleet.encoders[member]
    target = victim.address
    address = ctx.fleet.address
    marks: dict[str, float | None] = {}

    async def fault() -> None:
        marks["stopped"] = time.monotonic()
        victim.signal(signal.SIGSTOP)
        try:
            marks["ejected_after_s"] = await _until(
                lambda: _is(address, target, False), HUNG_EJECT_LIMIT_S
            )
            # Stay stopped while the load goes on without it.
            await asyncio.sleep(HUNG_HOLD_S)
        finally:
            victim.signal(signal.SIGCONT)
            marks["continued"] = time.monotonic()
        marks["back_after_s"] = await _until(lambda: _is(address, target, True), 60)

    tally, peak, at = await _fault_under_load(ctx, oracle, input_type, fault, f"SIGSTOP {member}")
    stopped, continued = marks.get("stopped") or 0.0, marks.get("continued") or 0.0
    # Requests in flight at the stop or started during it.
    p99_fault = tally.p99_s(stopped - LOAD_DEADLINE_S, continued)
    slowest = max((s_ for t, s_ in tally.timings if t < continued), default=0.0)
    return Outcome(
        test,
        tally,
        peak,
        checks={
            "every request answered": tally.succeeded + tally.failed == tally.sent == s.requests,
            "failed == 0": tally.failed == 0,
            "wrong_or_lost == 0": tally.wrong_or_lost == 0,
            "hung replica ejected": marks.get("ejected_after_s") is not None,
            "back in rotation after SIGCONT": marks.get("back_after_s") is not None,
            "p99 during the fault within the deadline": p99_fault < LOAD_DEADLINE_S,
            "held calls moved before SIGCONT (ejected, not waited out)": slowest
            < continued - stopped,
        },
        details={
            "fault_after_requests": at,
            "ejected_after_s": _round(marks.get("ejected_after_s")),
            "stopped_for_s": round(continued - stopped, 2),
            "back_after_sigcont_s": _round(marks.get("back_after_s")),
            "p99_during_fault_s": round(p99_fault, 3),
            "slowest_request_s": round(slowest, 3),
            "p99_overall_s": round(tally.p99_s(), 3),
            "fallback": tally.fallback,
            "codes": dict(tally.codes),
        },
    )


async def _is(address: str, target: str, healthy: bool) -> bool:
    return await _replica_healthy(address, target) is healthy


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


async def hung_document_replica(ctx: Context) -> Outcome:
    """SIGSTOP one of two document replicas mid-load: ejected, its requests finish on the
    other, taken back after SIGCONT."""
    return await _hung_replica(ctx, "document1", "document", "hung document replica (SIGSTOP)")


async def hung_query_replica(ctx: Context) -> Outcome:
    """SIGSTOP the query replica mid-load: ejected, queries served by the document pool
    (fallback) until it is back."""
    return await _hung_replica(ctx, "query", "query", "hung query replica (SIGSTOP)")


Scenario = Callable[[Context], Awaitable[Outcome]]
SCENARIOS: dict[str, Scenario] = {
    "kill9": kill_document_replica,
    "sigterm": sigterm_document_replica,
    "overload": overload,
    "query-down": query_pool_down,
    "hung-document": hung_document_replica,
    "hung-query": hung_query_replica,
    "gateway-restart": gateway_restart,
    "soak": soak,
    "bad-network": bad_network,
    "fuzz": fuzz,
}
