"""`aegis-lab bench query`: the query hot path, from the model call to the gateway.

One run, one machine, one student model: the in-process model call (the floor, one query at
a time) and its batched throughput (batches of 32, the model's own ceiling), the encoder
service alone (gRPC + batching), and the full path through the gateway in both query-pool
modes: `gateway` (a remote query pool process, the default) and `gateway_embedded` (the query
model inside the gateway process, `--query embedded`: no gRPC hop), at concurrency 1
(latency) and higher (throughput). The processes run as deployed (separate processes on
127.0.0.1); every run is bounded in requests and seconds. At every concurrency the systems
take turns in rounds (`turns`: up to SINGLE_ROUNDS, fewer when the requests in flight are
many), in alternating order, so the VM's drifting speed — it moved the bare model by 1.4x
within an hour — hits every system alike; `grpc_floor` is a bare grpc.health Check on the
gateway, the cost of any one Python gRPC round trip on the machine, against which the
one-in-flight overheads are read.

The same run measures the peers (bench/peers.py) on the same model directory, threads and
concurrencies: `naive_st` (Sentence-Transformers, one encode per request, no batching)
and Infinity on each of its CPU engines, `infinity_torch` and `infinity_onnx` (infinity-emb
from its own venv; skipped, with a note, when not installed); and `gateway_2proc`: the
gateway over N query processes of threads/N each instead of one process with all the
threads. All servers are started first; then, for each concurrency, the systems take their
turns as above (one loaded at a time, the others idle). Ratios against Infinity are taken against
whichever of its engines was faster at that concurrency.

Rows of docs/results/query_path.json: system is in_process | in_process_batched | grpc_floor |
encoder | gateway | gateway_embedded | gateway_2proc | naive_st | infinity_torch |
infinity_onnx;
`ratios` and `notes` summarize them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aegis_lab.bench import peers as peer_servers
from aegis_lab.bench.driver import LoadResult, run_load
from aegis_lab.bench.peers import NAIVE_WORKERS
from aegis_lab.bench.report import (
    machine_description,
    markdown_table,
    today,
    write_json,
    write_section,
)

_SUBJECTS = (
    "photosynthesis", "the roman empire", "black holes", "sourdough bread", "tcp congestion",
    "vaccines", "the french revolution", "compound interest", "jazz music", "volcanoes",
    "machine learning", "the water cycle", "chess openings", "climate change", "honeybees",
    "the stock market", "quantum computing", "the immune system", "medieval castles", "coffee",
)  # fmt: skip
_FORMS = (
    "what is {}", "how does {} work", "history of {}", "why does {} matter",
    "explain {} to a child", "best books about {}", "{} for beginners", "facts about {}",
)  # fmt: skip


def query_texts(n: int) -> list[str]:
    """Deterministic short queries (5–10 tokens), all distinct up to len(FORMS×SUBJECTS)."""
    base = [f.format(s) for s in _SUBJECTS for f in _FORMS]
    return [base[i % len(base)] + ("" if i < len(base) else f" {i}") for i in range(n)]


SYSTEMS = (
    "in_process", "in_process_batched", "grpc_floor", "encoder", "gateway", "gateway_embedded",
    "gateway_2proc", "naive_st", "infinity_torch", "infinity_onnx",
)  # fmt: skip
INFINITY = ("infinity_torch", "infinity_onnx")
PEERS = ("naive_st", *INFINITY)
# --peers names: each row's own, and `infinity` for both of its engines.
PEER_ALIASES = {"naive_st": ("naive_st",), "infinity": INFINITY} | {e: (e,) for e in INFINITY}
GATEWAYS = ("gateway", "gateway_embedded")
RATIO_CONCURRENCY = 64  # the throughput comparisons' concurrency (else the largest measured)
BATCH = 32  # in_process_batched: texts per model call
SINGLE_ROUNDS = 10  # at most this many turns per system and concurrency (one in flight: all)
BLOCK_PER_SLOT = 8  # a turn holds at least this many requests per request in flight
# p50 at one in flight minus in-process p50: the targets per query-pool mode.
OVERHEAD_TARGET_MS = {"gateway": 1.5, "gateway_embedded": 0.5}


@dataclass
class QueryBenchConfig:
    """What to measure; defaults fit a 2-core machine in a few minutes."""

    model: str = "builtin:query"
    threads: int = 0  # 0 = all cores for the encoder
    requests: int = 400
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 64, 256])
    max_seconds: float = 30.0
    batch_wait_ms: float = 0.0
    backend: str = "torch"  # the query model's runtime in-process and in the encoders
    out_dir: Path = Path("docs")
    command: str = ""
    progress: bool = True
    peers: list[str] = field(default_factory=lambda: ["naive_st", "infinity"])  # PEER_ALIASES
    embedded: bool = True  # also measure gateway_embedded (the query model in the gateway)
    infinity_bin: str | None = None  # None: the default venv's, else skipped with a note
    naive_workers: int = NAIVE_WORKERS
    split_procs: int = 2  # gateway_2proc: query processes of threads/N each (0 = skip)
    split_concurrency: int = 64
    notes: list[str] = field(default_factory=list)

    @property
    def total_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def peer_rows(self) -> list[str]:
        """The peer rows asked for (`infinity` = both engines), in report order."""
        unknown = set(self.peers) - set(PEER_ALIASES)
        if unknown:
            raise ValueError(f"unknown peers {sorted(unknown)}; choose from {list(PEER_ALIASES)}")
        wanted = {row for p in self.peers for row in PEER_ALIASES[p]}
        return [p for p in PEERS if p in wanted]


def _row(system: str, concurrency: int, res: LoadResult, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "concurrency": concurrency,
        "requests": len(res.latencies),
        "p50_ms": res.percentile_ms(50),
        "p95_ms": res.percentile_ms(95),
        "p99_ms": res.percentile_ms(99),
        "queries_per_s": res.units_per_s,
        "errors": res.errors,
        **extra,
    }


def _load_in_process(cfg: QueryBenchConfig, model_dir: Path, texts: list[str]) -> Any:
    from aegis_serve.models.embedder import Embedder

    emb = Embedder(model_dir, threads=cfg.total_threads, backend=cfg.backend)
    for t in texts[:20]:
        emb.embed([t])
    return emb


def in_process_latencies(emb: Any, texts: list[str], max_seconds: float) -> LoadResult:
    """Embedder.embed on one query at a time (the floor), same threads as the encoder."""
    latencies = []
    deadline = time.monotonic() + max_seconds
    start = time.perf_counter()
    for t in texts:
        t0 = time.perf_counter()
        emb.embed([t])
        latencies.append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    return LoadResult(latencies, time.perf_counter() - start, 0, len(latencies))


def bench_in_process(cfg: QueryBenchConfig, emb: Any, texts: list[str]) -> dict[str, Any]:
    """The floor on its own, when no run is at one in flight (measure_turns otherwise takes
    turns with the other systems)."""
    return _row("in_process", 1, in_process_latencies(emb, texts[: cfg.requests], cfg.max_seconds))


def bench_in_process_batched(cfg: QueryBenchConfig, emb: Any, texts: list[str]) -> dict[str, Any]:
    """The model's own batched throughput: Embedder.embed on batches of 32 queries, one call
    at a time, same threads (p50_ms is per batch; queries_per_s counts queries)."""
    batches = [texts[i : i + BATCH] for i in range(0, max(cfg.requests, BATCH), BATCH)]
    latencies, done = [], 0
    deadline = time.monotonic() + cfg.max_seconds
    start = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        emb.embed(batch, batch_size=BATCH)
        latencies.append(time.perf_counter() - t0)
        done += len(batch)
        if time.monotonic() > deadline:
            break
    res = LoadResult(latencies, time.perf_counter() - start, 0, done)
    return _row("in_process_batched", 1, res, batch_size=BATCH)


@dataclass
class Target:
    """A started system: how to call it, at which concurrencies, what to add to its rows."""

    system: str
    protocol: str  # "encoder" (EncoderService/Encode), "gateway" (Embed), "infinity" (REST),
    # "health" (grpc.health.v1 Check: no work, the floor of a gRPC round trip)
    address: str
    concurrency: list[int] | None = None  # None: cfg.concurrency
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _caller(
    target: Target, texts: list[str], connections: int
) -> AsyncIterator[Callable[[int], Any]]:
    """A warmed-up `call(i)` for run_load: one query per request, over the target's protocol
    (`connections`: the most requests it will have in flight, for HTTP keep-alive pools)."""
    if target.protocol == "encoder":
        import grpc

        from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc

        async with grpc.aio.insecure_channel(target.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)

            async def call(i: int) -> int:
                await stub.Encode(encoder_pb2.EncodeRequest(texts=[texts[i % len(texts)]]))
                return 1

            yield await _warm(call)
    elif target.protocol == "gateway":
        from aegis_client import AsyncEmbedClient

        async with AsyncEmbedClient(target.address, timeout=60, max_attempts=1) as client:

            async def call(i: int) -> int:
                await client.embed([texts[i % len(texts)]], "query")
                return 1

            yield await _warm(call)
    elif target.protocol == "health":
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(target.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def call(i: int) -> int:
                await health.Check(health_pb2.HealthCheckRequest())
                return 1

            yield await _warm(call)
    elif target.protocol == "infinity":
        async with peer_servers.infinity_client(target.address, connections, timeout=60) as http:

            async def call(i: int) -> int:
                await peer_servers.infinity_embed(http, [texts[i % len(texts)]])
                return 1

            yield await _warm(call)
    else:
        raise ValueError(f"unknown protocol {target.protocol!r}")


async def _warm(call: Callable[[int], Any]) -> Callable[[int], Any]:
    for i in range(20):
        await call(i)
    return call


def _merge(parts: list[LoadResult]) -> LoadResult:
    return LoadResult(
        [x for p in parts for x in p.latencies],
        sum(p.wall_s for p in parts),
        sum(p.errors for p in parts),
        sum(p.units for p in parts),
    )


async def _shifted(call: Callable[[int], Any], offset: int, i: int) -> int:
    return await call(i + offset)


def turns(requests: int, concurrency: int) -> int:
    """Rounds for one concurrency: up to SINGLE_ROUNDS, each block at least BLOCK_PER_SLOT
    requests per request in flight (so filling and draining stay a small part of it)."""
    return max(1, min(SINGLE_ROUNDS, requests // (concurrency * BLOCK_PER_SLOT)))


async def measure_turns(
    cfg: QueryBenchConfig,
    targets: list[tuple[Target, Callable[[int], Any]]],
    concurrency: int,
    emb: Any,
    texts: list[str],
) -> list[dict[str, Any]]:
    """The systems at one concurrency, in turns: each round gives every system (in-process
    first at one in flight, the others in alternating order) its share of the requests and
    seconds, so all see the same machine; a system's row sums its rounds."""
    rounds = turns(cfg.requests, concurrency)
    per, seconds = max(1, cfg.requests // rounds), cfg.max_seconds / rounds
    parts: dict[str, list[LoadResult]] = {t.system: [] for t, _ in targets}
    floor: list[LoadResult] = []
    for r in tqdm(range(rounds), desc=f"{concurrency} in flight (rounds)",
                  disable=not cfg.progress, leave=False):  # fmt: skip
        offset = r * per
        if emb is not None and concurrency == 1:
            floor.append(in_process_latencies(emb, texts[offset : offset + per], seconds))
        for target, call in targets if r % 2 == 0 else targets[::-1]:
            shifted = functools.partial(_shifted, call, offset)
            result = await run_load(shifted, per, concurrency, max_seconds=seconds,
                                    progress=False)  # fmt: skip
            parts[target.system].append(result)
    rows = [_row("in_process", 1, _merge(floor))] if floor else []
    extras = {t.system: t.extra for t, _ in targets}
    rows += [
        _row(system, concurrency, _merge(p), rounds=rounds, **extras[system])
        for system, p in parts.items()
    ]
    return rows


async def measure(
    cfg: QueryBenchConfig, targets: list[Target], emb: Any, texts: list[str]
) -> list[dict[str, Any]]:
    """For each concurrency, the systems in turns (measure_turns: one loaded at a time, the
    others idle), so drift in a shared machine's speed hits all alike."""
    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        calls = [
            await stack.enter_async_context(
                _caller(t, texts, max(t.concurrency or cfg.concurrency))
            )
            for t in targets
        ]
        for conc in cfg.concurrency:
            active = [
                (t, c) for t, c in zip(targets, calls, strict=True)
                if conc in (t.concurrency or cfg.concurrency)
            ]  # fmt: skip
            if conc == 1 and emb is not None:
                rows.append(bench_in_process_batched(cfg, emb, texts))
            rows += await measure_turns(cfg, active, conc, emb, texts)
    if emb is not None and 1 not in cfg.concurrency:
        rows.append(bench_in_process(cfg, emb, texts))
        rows.append(bench_in_process_batched(cfg, emb, texts))
    order = {s: i for i, s in enumerate(SYSTEMS)}
    return sorted(rows, key=lambda r: (order.get(r["system"], len(order)), r["concurrency"]))


def start_query_gateway(
    model_dir: Path,
    threads: int,
    n: int,
    env: dict[str, str],
    stack: contextlib.ExitStack,
    batch_wait_ms: float = 0.0,
    extra_args: tuple[list[str], list[str]] = ([], []),
) -> tuple[list[str], str]:
    """`n` query encoder processes of `threads` each behind one gateway process (the
    document pool points nowhere: queries only). Torn down by `stack`, gateway first.
    `extra_args` are appended to the (encoder, gateway) command lines."""
    from aegis_serve.supervisor import Child, serve_argv, stop_all, wait_all_ready

    encoders = [
        Child(f"encoder{i}", serve_argv("encoder", "--role", "query", "--model", str(model_dir),
                                        "--port", "0", "--threads", str(threads),
                                        "--batch-wait-ms", str(batch_wait_ms), *extra_args[0]),
              env).start()
        for i in range(n)
    ]  # fmt: skip
    children = list(encoders)
    stack.callback(stop_all, children, 5)  # gateway first (inserted at 0), then the pool
    wait_all_ready(encoders, 300)
    addresses = [e.address for e in encoders]
    gateway = Child("gateway", serve_argv("gateway", "--port", "0", "--query", ",".join(addresses),
                                          "--document", "127.0.0.1:9", *extra_args[1]),
                    env).start()  # fmt: skip
    children.insert(0, gateway)
    gateway.wait_ready(120)
    return addresses, gateway.address


def start_embedded_gateway(
    model_dir: Path,
    threads: int,
    env: dict[str, str],
    stack: contextlib.ExitStack,
    batch_wait_ms: float = 0.0,
    backend: str = "torch",
) -> str:
    """One gateway process with the query model inside (`--query embedded`, `threads` model
    threads, the same batching settings as the encoders); the document pool points nowhere.
    Torn down by `stack`."""
    from aegis_serve.supervisor import Child, serve_argv, stop_all

    gateway = Child("gateway_embedded", serve_argv(
        "gateway", "--port", "0", "--query", "embedded", "--query-model", str(model_dir),
        "--query-backend", backend, "--query-threads", str(threads),
        "--query-batch-wait-ms", str(batch_wait_ms), "--document", "127.0.0.1:9"),
        env).start()  # fmt: skip
    stack.callback(stop_all, [gateway], 5)
    gateway.wait_ready(300)
    return gateway.address


def _close_all(stacks: list[contextlib.ExitStack]) -> None:
    with ThreadPoolExecutor(max_workers=len(stacks), thread_name_prefix="stop") as stopper:
        for future in [stopper.submit(s.close) for s in stacks]:
            future.result()


def start_systems(
    cfg: QueryBenchConfig, model_dir: Path, stack: contextlib.ExitStack
) -> list[Target]:
    """Start every server, all at once (each system waits for its own READY lines on a
    thread): encoder + gateway, the embedded gateway, the split pool behind its own gateway,
    and the peers. `stack` stops them, all at once too (each system in its own order). A peer
    that is not installed or fails to start is skipped with a note; the rest goes on."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    own = [contextlib.ExitStack() for _ in range(5)]  # one per system, closed in parallel
    stack.callback(_close_all, own)
    threads = cfg.total_threads
    backend = (["--backend", cfg.backend], [])
    peers = cfg.peer_rows
    engines = [p for p in peers if p in INFINITY]
    scratch = Path(own[4].enter_context(tempfile.TemporaryDirectory(prefix="infinity-peer-")))
    naive_notes: list[str] = []
    infinity_notes: list[str] = []

    def pool(threads: int, n: int, stops: contextlib.ExitStack) -> tuple[list[str], str]:
        return start_query_gateway(model_dir, threads, n, env, stops, cfg.batch_wait_ms, backend)

    def naive() -> str | None:
        if not peer_servers.naive_st_available():
            naive_notes.append("naive_st skipped: sentence-transformers is not installed")
            return None
        try:
            peer = peer_servers.start_naive_st(model_dir, threads, workers=cfg.naive_workers)
        except RuntimeError as exc:
            naive_notes.append(f"naive_st failed to start: {str(exc).splitlines()[0]}")
            return None
        own[3].callback(peer.terminate)
        return peer.address

    def infinity() -> list[tuple[str, str]]:
        started = peer_servers.start_infinity_peers(
            engines, cfg.infinity_bin, model_dir, threads, scratch, infinity_notes
        )
        for _, peer in started:
            own[4].callback(peer.terminate)
        return [(name, peer.address) for name, peer in started]

    per = max(1, threads // cfg.split_procs) if cfg.split_procs > 1 else 0
    with ThreadPoolExecutor(max_workers=5, thread_name_prefix="start") as starter:
        main = starter.submit(pool, threads, 1, own[0])
        embedded = (
            starter.submit(start_embedded_gateway, model_dir, threads, env, own[1],
                           cfg.batch_wait_ms, cfg.backend)
            if cfg.embedded else None
        )  # fmt: skip
        split = starter.submit(pool, per, cfg.split_procs, own[2]) if per else None
        naive_st = starter.submit(naive) if "naive_st" in peers else None
        infinity_peers = starter.submit(infinity) if engines else None
    (encoder,), gateway = main.result()
    targets = [Target("grpc_floor", "health", gateway, [1]), Target("encoder", "encoder", encoder),
               Target("gateway", "gateway", gateway)]  # fmt: skip
    if embedded is not None:
        targets.append(Target("gateway_embedded", "gateway", embedded.result()))
    if split is not None:
        extra = {"processes": cfg.split_procs, "threads_per_process": per}
        targets.append(Target("gateway_2proc", "gateway", split.result()[1],
                              [cfg.split_concurrency], extra))  # fmt: skip
    if naive_st is not None and (address := naive_st.result()) is not None:
        targets.append(Target("naive_st", "encoder", address))
    if infinity_peers is not None:
        targets += [Target(name, "infinity", address) for name, address in infinity_peers.result()]
    cfg.notes += naive_notes + infinity_notes
    return targets


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    single = [s for s in systems if s != "in_process_batched"]  # its p50 is per 32 queries
    c1 = [_find(rows, s, 1) for s in single]
    labels = [s for s, r in zip(single, c1, strict=True) if r]
    vals = [r for r in c1 if r]
    x = np.arange(len(vals))
    left.bar(x - 0.2, [r["p50_ms"] for r in vals], 0.4, label="p50")
    left.bar(x + 0.2, [r["p99_ms"] for r in vals], 0.4, label="p99")
    left.set_xticks(x, labels, rotation=25, ha="right")
    left.set_ylabel("ms per query (one in flight)")
    left.set_title("single-query latency")
    left.legend()
    for s in systems:
        pts = sorted((r["concurrency"], r["queries_per_s"]) for r in rows if r["system"] == s)
        if s == "in_process_batched" and pts:
            right.axhline(pts[0][1], color="gray", ls="--", label=f"in-process, batches of {BATCH}")
        elif len(pts) > 1:
            right.plot(*zip(*pts, strict=True), "o-", label=s)
        elif pts and s not in ("in_process", "grpc_floor"):
            right.plot(*zip(*pts, strict=True), "D", markersize=9, label=s)
    right.set_xscale("log", base=2)
    right.set_xlabel("requests in flight")
    right.set_ylabel("queries / s")
    right.set_title("throughput")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _find(rows: list[dict[str, Any]], system: str, concurrency: int) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["system"] == system and r["concurrency"] == concurrency), None
    )


def _qps(rows: list[dict[str, Any]], system: str, concurrency: int) -> float | None:
    row = _find(rows, system, concurrency)
    return row["queries_per_s"] if row and row["requests"] else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def best_infinity(rows: list[dict[str, Any]], concurrency: int) -> tuple[str, float] | None:
    """Infinity's faster engine at this concurrency, and its queries/s (None: not measured)."""
    measured = [(_qps(rows, e, concurrency), e) for e in INFINITY]
    measured = [(q, e) for q, e in measured if q is not None]
    if not measured:
        return None
    qps, engine = max(measured)
    return engine, qps


def _p50_minus_floor(rows: list[dict[str, Any]], system: str) -> float | None:
    floor, one = _find(rows, "in_process", 1), _find(rows, system, 1)
    return one["p50_ms"] - floor["p50_ms"] if one and floor else None


def compute_ratios(rows: list[dict[str, Any]], cfg: QueryBenchConfig) -> dict[str, Any]:
    """The headline comparisons (None where a side was not measured). Infinity's side is its
    faster engine at that concurrency (`infinity_engine_at_throughput` names it)."""
    c = RATIO_CONCURRENCY if RATIO_CONCURRENCY in cfg.concurrency else max(cfg.concurrency)
    inf = best_infinity(rows, c)
    inf_qps = inf[1] if inf else None
    batched = _qps(rows, "in_process_batched", 1)
    split_c = cfg.split_concurrency
    ratios: dict[str, Any] = {"throughput_concurrency": c,
                              "infinity_engine_at_throughput": inf[0] if inf else None}  # fmt: skip
    for gw in GATEWAYS:
        qps = _qps(rows, gw, c)
        ratios[f"{gw}_vs_infinity_qps"] = _div(qps, inf_qps)
        ratios[f"{gw}_vs_naive_st_qps"] = _div(qps, _qps(rows, "naive_st", c))
        ratios[f"{gw}_vs_in_process_batched_qps"] = _div(qps, batched)
        ratios[f"{gw}_p50_minus_in_process_p50_ms"] = _p50_minus_floor(rows, gw)
    ratios["gateway_embedded_vs_gateway_qps"] = _div(
        _qps(rows, "gateway_embedded", c), _qps(rows, "gateway", c)
    )
    floor = _find(rows, "grpc_floor", 1)
    ratios["grpc_floor_p50_ms"] = floor["p50_ms"] if floor else None
    ratios["split_concurrency"] = split_c
    ratios["gateway_2proc_vs_gateway_qps"] = _div(
        _qps(rows, "gateway_2proc", split_c), _qps(rows, "gateway", split_c)
    )
    return ratios


def _ratio_lines(ratios: dict[str, Any], rows: list[dict[str, Any]], threads: int) -> list[str]:
    c, sc = ratios["throughput_concurrency"], ratios["split_concurrency"]
    lines = []
    inf = best_infinity(rows, c)
    for gw in GATEWAYS:
        qps = _qps(rows, gw, c)
        if qps is None:
            continue
        for peer, target in (("infinity", 1.5), ("naive_st", 2.0)):
            ratio = ratios[f"{gw}_vs_{peer}_qps"]
            if ratio is None:
                lines.append(
                    f"- {gw} vs {peer} at {c} in flight: not measured (target ≥ {target}×)"
                )
                continue
            name, peer_qps = inf if peer == "infinity" and inf else (peer, _qps(rows, peer, c))
            verdict = "meets" if ratio >= target else "misses"
            lines.append(
                f"- {gw} vs {peer} at {c} in flight: {qps:,.1f} vs {peer_qps:,.1f} queries/s "
                f"({name}) = **{ratio:.2f}×** ({verdict} the ≥ {target}× target)"
            )
        extra = ratios[f"{gw}_p50_minus_in_process_p50_ms"]
        if extra is not None:
            target = OVERHEAD_TARGET_MS[gw]
            verdict = "meets" if extra <= target else "misses"
            lines.append(
                f"- {gw} p50 at 1 in flight − in-process p50: **{extra:.2f} ms** "
                f"({verdict} the ≤ {target} ms target)"
            )
        share = ratios[f"{gw}_vs_in_process_batched_qps"]
        if share is not None:
            lines.append(
                f"- {gw} at {c} in flight reaches **{share:.0%}** of the model's own batched "
                f"in-process throughput ({qps:,.1f} vs "
                f"{_qps(rows, 'in_process_batched', 1):,.1f} queries/s, batches of {BATCH})"
            )
    batched = _qps(rows, "in_process_batched", 1)
    if inf and batched:
        lines.append(
            f"- {inf[0]} at {c} in flight reaches {inf[1] / batched:.0%} of the same model's "
            f"batched in-process rate: 1.5× it would be {1.5 * inf[1] / batched:.2f}× that rate"
        )
    embedded = ratios["gateway_embedded_vs_gateway_qps"]
    if embedded is not None:
        lines.append(
            f"- embedded vs remote query pool at {c} in flight: **{embedded:.2f}×** the "
            "remote pool's queries/s"
        )
    split = ratios["gateway_2proc_vs_gateway_qps"]
    two = _find(rows, "gateway_2proc", sc)
    if split is not None and two:
        verdict = "no loss" if split >= 1.0 else "a loss"
        lines.append(
            f"- query pool split at {sc} in flight: {two['processes']} processes × "
            f"{two['threads_per_process']} thread{'s' if two['threads_per_process'] > 1 else ''}"
            f" {two['queries_per_s']:,.1f} queries/s vs 1 process × {threads} threads "
            f"{_qps(rows, 'gateway', sc):,.1f} = **{split:.2f}×** ({verdict}; target: no loss)"
        )
    return lines


def side_by_side(rows: list[dict[str, Any]], cfg: QueryBenchConfig) -> str:
    """queries/s per system and concurrency, with gateway ÷ peer ratios (Infinity: its
    faster engine at each concurrency)."""
    skip = {"in_process", "in_process_batched", "grpc_floor"}
    systems = [s for s in SYSTEMS if s not in skip and any(r["system"] == s for r in rows)]
    gateways = [g for g in GATEWAYS if g in systems]
    peers = [p for p in ("naive_st", "infinity") if p in systems or p == "infinity"]
    table = []
    for c in cfg.concurrency:
        row: dict[str, Any] = {"concurrency": c}
        for s in systems:
            qps = _qps(rows, s, c)
            row[s] = "" if qps is None else qps
        inf = best_infinity(rows, c)
        for g in gateways:
            for p in peers:
                peer = (inf[1] if inf else None) if p == "infinity" else _qps(rows, p, c)
                ratio = _div(_qps(rows, g, c), peer)
                label = f" ({inf[0].removeprefix('infinity_')})" if p == "infinity" and inf else ""
                row[f"{g}_vs_{p}"] = "" if ratio is None else f"{ratio:.2f}×{label}"
        table.append(row)
    columns = [("concurrency", "in flight")] + [(s, f"{s} q/s") for s in systems]
    columns += [(f"{g}_vs_{p}", f"{g} ÷ {p}") for g in gateways for p in peers]
    return markdown_table(table, columns)


def summarize(rows: list[dict[str, Any]], cfg: QueryBenchConfig, machine: str, model: str) -> str:
    floor = next(r for r in rows if r["system"] == "in_process")
    batched = _find(rows, "in_process_batched", 1)
    ratios = compute_ratios(rows, cfg)
    lines = ["## Query path", "", f"- command: `{cfg.command}`",
             f"- machine: {machine}; date: {today()}; model: {model} "
             f"(backend {cfg.backend} in-process, in the encoders and in the embedded gateway; "
             f"peers: their own); threads: {cfg.total_threads} per system (all systems on the "
             "same cores; at each concurrency the systems take turns, one loaded at a time, the "
             f"others idle, in up to {SINGLE_ROUNDS} rounds of alternating order: `rounds` "
             "column)"]  # fmt: skip
    if batched:
        lines.append(
            f"- the model's own ceiling, in-process batches of {BATCH}: "
            f"{batched['queries_per_s']:,.1f} queries/s ({batched['p50_ms']:.2f} ms per batch)"
        )
    grpc_floor = _find(rows, "grpc_floor", 1)
    if grpc_floor:
        lines.append(
            f"- one bare gRPC round trip (grpc.health Check on the gateway, no work): "
            f"p50 {grpc_floor['p50_ms']:.2f} ms — the floor of every hop below (client → "
            "gateway; the remote pool adds gateway → encoder)"
        )
    for system in ("encoder", "gateway", "gateway_embedded"):
        r = _find(rows, system, 1)
        if r:
            extra = r["p50_ms"] - floor["p50_ms"]
            sign = "+" if extra >= 0 else "−"
            lines.append(
                f"- {system} p50 at concurrency 1: {r['p50_ms']:.2f} ms = in-process "
                f"{floor['p50_ms']:.2f} ms {sign} {abs(extra):.2f} ms"
            )
    lines += _ratio_lines(ratios, rows, cfg.total_threads)
    lines += [f"- note: {n}" for n in cfg.notes]
    lines += [
        "- systems: `gateway` = the gateway over one query encoder process (the default, remote "
        "pool, with its default coalescing: at most 2 Encode calls in flight, queries arriving "
        "meanwhile share the next call); `gateway_embedded` = one gateway process with the "
        "query model inside (`--query embedded`: same Encoder core and batcher, no gRPC "
        "hop); `naive_st` = "
        "`SentenceTransformer(dir).encode([text])` per request behind a sync gRPC server "
        f"({cfg.naive_workers} worker threads, one encode at a time, no batching), same "
        "EncoderService/Encode proto and grpc.aio client as `encoder`; `infinity_torch` / "
        "`infinity_onnx` = infinity-emb's REST server with its own dynamic batching on its "
        "torch / optimum (ONNX Runtime) engine, driven by aiohttp.ClientSession (HTTP/1.1 "
        "keep-alive pool as large as the requests in flight)"
        + (f"; `gateway_2proc` = the gateway over {cfg.split_procs} query processes with "
           f"threads/{cfg.split_procs} each" if cfg.split_procs > 1 else "")
        + " (bench/peers.py, bench/query.py)",
        "",
        "Throughput side by side (queries/s; ratio = gateway ÷ peer at the same concurrency, "
        "Infinity's faster engine in brackets):",
        "",
        side_by_side(rows, cfg),
        "",
        markdown_table(rows, [
            ("system", "system"), ("concurrency", "in flight"), ("requests", "requests"),
            ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
            ("queries_per_s", "queries/s"), ("errors", "errors"), ("rounds", "rounds"),
        ]),
        "",
        "![query path](results/query_path.png)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _model_note(model_dir: Path) -> str:
    """Which modules every system loads from the one directory (and prompts Infinity skips)."""
    import json

    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = " → ".join(m["type"].rsplit(".", 1)[-1] for m in modules)
    note = f"every system loads {model_dir} ({kinds})"
    st_config = model_dir / "config_sentence_transformers.json"
    prompts = json.loads(st_config.read_text()).get("prompts") if st_config.exists() else None
    if prompts:
        note += f"; prompts {sorted(prompts)} are not applied by infinity"
    if any(m["type"].endswith("Dense") for m in modules):
        note += (
            "; infinity_onnx runs the transformer + mean pooling + normalize only (its optimum "
            "engine skips Dense modules)"
        )
    return note


def run_query_bench(cfg: QueryBenchConfig) -> dict[str, Any]:
    from aegis_serve.models.resolve import resolve_model

    _ = cfg.peer_rows  # an unknown peer name fails here, before anything starts
    model_dir = resolve_model(cfg.model)
    cfg.notes = [_model_note(model_dir)]
    texts = query_texts(max(cfg.requests, 200))
    emb = _load_in_process(cfg, model_dir, texts)
    with contextlib.ExitStack() as stack:
        targets = start_systems(cfg, model_dir, stack)
        rows = asyncio.run(measure(cfg, targets, emb, texts))
    machine = machine_description()
    payload = {"machine": machine, "date": today(), "command": cfg.command,
               "model": model_dir.name, "model_dir": str(model_dir), "backend": cfg.backend,
               "threads": cfg.total_threads, "rows": rows,
               "ratios": compute_ratios(rows, cfg), "notes": list(cfg.notes)}  # fmt: skip
    results = cfg.out_dir / "results"
    write_json(results / "query_path.json", payload)
    plot(rows, results / "query_path.png")
    write_section(cfg.out_dir / "benchmarks.md", "query_path",
                  summarize(rows, cfg, machine, model_dir.name))  # fmt: skip
    return payload


def main_args(ns: Any) -> int:
    cfg = QueryBenchConfig(
        model=ns.model, threads=ns.threads, requests=ns.requests,
        concurrency=[int(c) for c in ns.concurrency.split(",")], max_seconds=ns.max_seconds,
        batch_wait_ms=ns.batch_wait_ms, backend=ns.backend, out_dir=Path(ns.out_dir),
        command="aegis-lab " + " ".join(sys.argv[1:]),
        peers=[p for p in ns.peers.split(",") if p], infinity_bin=ns.infinity_bin or None,
        naive_workers=ns.naive_workers, split_procs=ns.split_procs,
        split_concurrency=ns.split_concurrency,
    )  # fmt: skip
    payload = run_query_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in payload["ratios"].items()})
    for note in payload["notes"]:
        print("note:", note)
    return 0
