"""`aegis-lab bench query`: the query hot path, from the model call to the gateway.

One run, one machine, one student model: the in-process model call (the floor), the
encoder service alone (gRPC + batching), and the full path through the gateway, at
concurrency 1 (latency) and higher (throughput). The processes run as deployed
(separate encoder and gateway processes on 127.0.0.1); every run is bounded in requests
and seconds.

The same run measures the peers (bench/peers.py) on the same model directory, threads and
concurrencies: `naive_st` (Sentence-Transformers, one encode per request, no batching)
and `infinity` (infinity-emb from its own venv; skipped, with a note, when not installed),
and `gateway_2proc`: the gateway over N query processes of threads/N each instead of one
process with all the threads. All servers are started first; then, for each concurrency,
each system is loaded in turn while the others sit idle (interleaved, so a shared
machine's changing background load is spread over all systems rather than one).

Rows of docs/results/query_path.json: system is in_process | encoder | gateway |
gateway_2proc | naive_st | infinity; `ratios` and `notes` summarize them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


SYSTEMS = ("in_process", "encoder", "gateway", "gateway_2proc", "naive_st", "infinity")
RATIO_CONCURRENCY = 64  # the throughput comparisons' concurrency (else the largest measured)


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
    peers: list[str] = field(default_factory=lambda: ["naive_st", "infinity"])
    infinity_bin: str | None = None  # None: the default venv's, else skipped with a note
    naive_workers: int = NAIVE_WORKERS
    split_procs: int = 2  # gateway_2proc: query processes of threads/N each (0 = skip)
    split_concurrency: int = 64
    notes: list[str] = field(default_factory=list)

    @property
    def total_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


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


def bench_in_process(cfg: QueryBenchConfig, emb: Any, texts: list[str]) -> dict[str, Any]:
    """The floor: Embedder.embed on one query at a time, same threads as the encoder."""
    latencies = []
    deadline = time.monotonic() + cfg.max_seconds
    start = time.perf_counter()
    for t in texts[: cfg.requests]:
        t0 = time.perf_counter()
        emb.embed([t])
        latencies.append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    res = LoadResult(latencies, time.perf_counter() - start, 0, len(latencies))
    return _row("in_process", 1, res)


@dataclass
class Target:
    """A started system: how to call it, at which concurrencies, what to add to its rows."""

    system: str
    protocol: str  # "encoder" (EncoderService/Encode), "gateway" (Embed), "infinity" (REST)
    address: str
    concurrency: list[int] | None = None  # None: cfg.concurrency
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _caller(target: Target, texts: list[str]) -> AsyncIterator[Callable[[int], Any]]:
    """A warmed-up `call(i)` for run_load: one query per request, over the target's protocol."""
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

        async with AsyncEmbedClient(target.address, timeout=60) as client:

            async def call(i: int) -> int:
                await client.embed([texts[i % len(texts)]], "query")
                return 1

            yield await _warm(call)
    elif target.protocol == "infinity":
        async with peer_servers.HttpClient(target.address, timeout=60) as http:

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


async def measure(
    cfg: QueryBenchConfig, targets: list[Target], emb: Any, texts: list[str]
) -> list[dict[str, Any]]:
    """Interleaved: for each concurrency, every system in turn (one loaded at a time, the
    others idle), so slow drift in a shared machine's background load hits all alike."""
    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        calls = [await stack.enter_async_context(_caller(t, texts)) for t in targets]
        for conc in cfg.concurrency:
            if conc == 1 and emb is not None:
                rows.append(bench_in_process(cfg, emb, texts))
            for target, call in zip(targets, calls, strict=True):
                if conc not in (target.concurrency or cfg.concurrency):
                    continue
                res = await run_load(call, cfg.requests, conc, max_seconds=cfg.max_seconds,
                                     label=f"{target.system} c={conc}",
                                     progress=cfg.progress)  # fmt: skip
                rows.append(_row(target.system, conc, res, **target.extra))
    if emb is not None and 1 not in cfg.concurrency:
        rows.append(bench_in_process(cfg, emb, texts))
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


def start_systems(
    cfg: QueryBenchConfig, model_dir: Path, stack: contextlib.ExitStack
) -> list[Target]:
    """Start every server (torn down by `stack`): encoder + gateway, the split pool behind
    its own gateway, and the peers. A peer that is not installed or fails to start is
    skipped with a note; the rest of the run goes on."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def pool(threads: int, n: int) -> tuple[list[str], str]:
        backend = (["--backend", cfg.backend], [])
        return start_query_gateway(model_dir, threads, n, env, stack, cfg.batch_wait_ms, backend)

    threads = cfg.total_threads
    (encoder,), gateway = pool(threads, 1)
    targets = [Target("encoder", "encoder", encoder), Target("gateway", "gateway", gateway)]
    if cfg.split_procs > 1:
        per = max(1, threads // cfg.split_procs)
        _, split_gateway = pool(per, cfg.split_procs)
        extra = {"processes": cfg.split_procs, "threads_per_process": per}
        targets.append(
            Target("gateway_2proc", "gateway", split_gateway, [cfg.split_concurrency], extra)
        )
    if "naive_st" in cfg.peers:
        if not peer_servers.naive_st_available():
            cfg.notes.append("naive_st skipped: sentence-transformers is not installed")
        else:
            try:
                peer = peer_servers.start_naive_st(model_dir, threads, workers=cfg.naive_workers)
                stack.callback(peer.terminate)
                targets.append(Target("naive_st", "encoder", peer.address))
            except RuntimeError as exc:
                cfg.notes.append(f"naive_st failed to start: {str(exc).splitlines()[0]}")
    if "infinity" in cfg.peers:
        binary = peer_servers.find_infinity(cfg.infinity_bin)
        if binary is None:
            cfg.notes.append(
                f"infinity skipped: no {peer_servers.DEFAULT_INFINITY_VENV}/bin/infinity_emb "
                "(run scripts/install_infinity.sh or pass --infinity-bin)"
            )
        else:
            cfg.notes.append(
                f"infinity: {_infinity_version(binary)} from {binary.parent.parent}, "
                "`infinity_emb v2 --engine torch --device cpu --no-bettertransformer`, "
                "REST /embeddings (base64)"
            )
            try:
                peer = peer_servers.start_infinity(binary, model_dir, threads)
                stack.callback(peer.terminate)
                targets.append(Target("infinity", "infinity", peer.address))
            except RuntimeError as exc:
                cfg.notes.append(f"infinity failed to start: {str(exc).splitlines()[0]}")
    return targets


def _infinity_version(binary: Path) -> str:
    import subprocess

    python = binary.parent / "python"
    try:
        out = subprocess.run(
            [str(python), "-c", "import infinity_emb, torch; "
             "print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "infinity-emb (version unknown)"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    c1 = [_find(rows, s, 1) for s in systems]
    labels = [s for s, r in zip(systems, c1, strict=True) if r]
    vals = [r for r in c1 if r]
    x = np.arange(len(vals))
    left.bar(x - 0.2, [r["p50_ms"] for r in vals], 0.4, label="p50")
    left.bar(x + 0.2, [r["p99_ms"] for r in vals], 0.4, label="p99")
    left.set_xticks(x, labels, rotation=15)
    left.set_ylabel("ms per query (one in flight)")
    left.set_title("single-query latency")
    left.legend()
    for s in systems:
        pts = sorted((r["concurrency"], r["queries_per_s"]) for r in rows if r["system"] == s)
        if len(pts) > 1:
            right.plot(*zip(*pts, strict=True), "o-", label=s)
        elif pts and s != "in_process":
            right.plot(*zip(*pts, strict=True), "D", markersize=9, label=s)
    right.set_xscale("log", base=2)
    right.set_xlabel("requests in flight")
    right.set_ylabel("queries / s")
    right.set_title("throughput")
    right.legend()
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


def compute_ratios(rows: list[dict[str, Any]], cfg: QueryBenchConfig) -> dict[str, Any]:
    """The headline comparisons (None where a side was not measured)."""
    c = RATIO_CONCURRENCY if RATIO_CONCURRENCY in cfg.concurrency else max(cfg.concurrency)
    floor, gw1 = _find(rows, "in_process", 1), _find(rows, "gateway", 1)
    gw = _qps(rows, "gateway", c)
    split_c = cfg.split_concurrency
    return {
        "throughput_concurrency": c,
        "gateway_vs_infinity_qps": _div(gw, _qps(rows, "infinity", c)),
        "gateway_vs_naive_st_qps": _div(gw, _qps(rows, "naive_st", c)),
        "gateway_p50_minus_in_process_p50_ms": (
            gw1["p50_ms"] - floor["p50_ms"] if gw1 and floor else None
        ),
        "split_concurrency": split_c,
        "gateway_2proc_vs_gateway_qps": _div(
            _qps(rows, "gateway_2proc", split_c), _qps(rows, "gateway", split_c)
        ),
    }


def _x(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}×"


def _ratio_lines(ratios: dict[str, Any], rows: list[dict[str, Any]], threads: int) -> list[str]:
    c, sc = ratios["throughput_concurrency"], ratios["split_concurrency"]
    gw = _qps(rows, "gateway", c)
    lines = []
    for peer, target in (("infinity", 1.5), ("naive_st", 2.0)):
        ratio, qps = ratios[f"gateway_vs_{peer}_qps"], _qps(rows, peer, c)
        if ratio is None:
            lines.append(f"- gateway vs {peer} at {c} in flight: not measured (target ≥ {target}×)")
            continue
        verdict = "meets" if ratio >= target else "misses"
        lines.append(
            f"- gateway vs {peer} at {c} in flight: {gw:,.1f} vs {qps:,.1f} queries/s = "
            f"**{ratio:.2f}×** ({verdict} the ≥ {target}× target)"
        )
    extra = ratios["gateway_p50_minus_in_process_p50_ms"]
    if extra is not None:
        verdict = "meets" if extra <= 1.5 else "misses"
        lines.append(
            f"- gateway p50 at 1 in flight − in-process p50: **{extra:.2f} ms** "
            f"({verdict} the ≤ 1.5 ms target)"
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
    """queries/s per system and concurrency, with gateway ÷ peer ratios."""
    systems = [s for s in SYSTEMS if s != "in_process" and any(r["system"] == s for r in rows)]
    peers = [s for s in ("naive_st", "infinity") if s in systems]
    table = []
    for c in cfg.concurrency:
        row: dict[str, Any] = {"concurrency": c}
        for s in systems:
            qps = _qps(rows, s, c)
            row[s] = "" if qps is None else qps
        for p in peers:
            ratio = _div(_qps(rows, "gateway", c), _qps(rows, p, c))
            row[f"vs_{p}"] = "" if ratio is None else f"{ratio:.2f}×"
        table.append(row)
    columns = [("concurrency", "in flight")] + [(s, f"{s} q/s") for s in systems]
    columns += [(f"vs_{p}", f"gateway ÷ {p}") for p in peers]
    return markdown_table(table, columns)


def summarize(rows: list[dict[str, Any]], cfg: QueryBenchConfig, machine: str, model: str) -> str:
    floor = next(r for r in rows if r["system"] == "in_process")
    ratios = compute_ratios(rows, cfg)
    lines = ["## Query path", "", f"- command: `{cfg.command}`",
             f"- machine: {machine}; date: {today()}; model: {model} "
             f"(backend {cfg.backend} in-process and in the encoders; peers: their own); "
             f"threads: {cfg.total_threads} per system (all systems on the same cores; for "
             "each concurrency the systems are loaded in turn, the others idle)"]  # fmt: skip
    for system in ("encoder", "gateway"):
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
        "- peers: `naive_st` = `SentenceTransformer(dir).encode([text])` per request behind a "
        f"sync gRPC server ({cfg.naive_workers} worker threads, one encode at a time, no "
        "batching), same EncoderService/Encode proto and grpc.aio client as `encoder`; "
        "`infinity` = infinity-emb's REST server with its own dynamic batching, driven by an "
        "asyncio HTTP/1.1 keep-alive client; `gateway_2proc` = the gateway over "
        f"{cfg.split_procs} query processes with threads/{cfg.split_procs} each "
        "(bench/peers.py, bench/query.py)",
        "",
        "Throughput side by side (queries/s; ratio = gateway ÷ peer at the same concurrency):",
        "",
        side_by_side(rows, cfg),
        "",
        markdown_table(rows, [
            ("system", "system"), ("concurrency", "in flight"), ("requests", "requests"),
            ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
            ("queries_per_s", "queries/s"), ("errors", "errors"),
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
    return note


def run_query_bench(cfg: QueryBenchConfig) -> dict[str, Any]:
    from aegis_serve.models.resolve import resolve_model

    unknown = set(cfg.peers) - {"naive_st", "infinity"}
    if unknown:
        raise ValueError(f"unknown peers {sorted(unknown)}; choose from naive_st, infinity")
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
