"""`aegis-serve bench query`: the query hot path, from the model call to the gateway.

One run, one machine, one student model: the in-process model call (the floor), the
encoder service alone (gRPC + batching), and the full path through the gateway, at
concurrency 1 (latency) and higher (throughput). The processes run as deployed
(separate encoder and gateway processes on 127.0.0.1); every run is bounded in requests
and seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aegis_serve.bench.driver import LoadResult, run_load
from aegis_serve.bench.report import (
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


@dataclass
class QueryBenchConfig:
    """What to measure; defaults fit a 2-core machine in a few minutes."""

    model: str = "builtin:query"
    threads: int = 0  # 0 = all cores for the encoder
    requests: int = 400
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 64, 256])
    max_seconds: float = 30.0
    batch_wait_ms: float = 0.0
    out_dir: Path = Path("docs")
    command: str = ""
    progress: bool = True


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


def bench_in_process(cfg: QueryBenchConfig, model_dir: Path, texts: list[str]) -> dict[str, Any]:
    """The floor: Embedder.embed on one query at a time, same threads as the encoder."""
    from aegis_serve.models.embedder import Embedder

    emb = Embedder(model_dir, threads=cfg.threads or os.cpu_count())
    for t in texts[:20]:
        emb.embed([t])
    latencies = []
    deadline = time.monotonic() + cfg.max_seconds
    start = time.perf_counter()
    for t in texts:
        t0 = time.perf_counter()
        emb.embed([t])
        latencies.append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    res = LoadResult(latencies, time.perf_counter() - start, 0, len(latencies))
    return _row("in_process", 1, res)


async def _drive_encoder(cfg: QueryBenchConfig, address: str, texts: list[str]) -> list[dict]:
    import grpc

    from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc

    rows = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        for t in texts[:20]:
            await stub.Encode(encoder_pb2.EncodeRequest(texts=[t]))
        for conc in cfg.concurrency:

            async def call(i: int) -> int:
                await stub.Encode(encoder_pb2.EncodeRequest(texts=[texts[i % len(texts)]]))
                return 1

            res = await run_load(call, cfg.requests, conc, max_seconds=cfg.max_seconds,
                                 label=f"encoder c={conc}", progress=cfg.progress)  # fmt: skip
            rows.append(_row("encoder", conc, res))
    return rows


async def _drive_gateway(cfg: QueryBenchConfig, address: str, texts: list[str]) -> list[dict]:
    from aegis_client import AsyncEmbedClient

    rows = []
    async with AsyncEmbedClient(address, timeout=60) as client:
        for t in texts[:20]:
            await client.embed([t], "query")
        for conc in cfg.concurrency:

            async def call(i: int) -> int:
                await client.embed([texts[i % len(texts)]], "query")
                return 1

            res = await run_load(call, cfg.requests, conc, max_seconds=cfg.max_seconds,
                                 label=f"gateway c={conc}", progress=cfg.progress)  # fmt: skip
            rows.append(_row("gateway", conc, res))
    return rows


def bench_services(cfg: QueryBenchConfig, model_dir: Path, texts: list[str]) -> list[dict]:
    from aegis_serve.stack import spawn, stop_all, wait_ready

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = ["encoder", "--role", "query", "--model", str(model_dir), "--port", "0",
            "--threads", str(cfg.threads or os.cpu_count()),
            "--batch-wait-ms", str(cfg.batch_wait_ms)]  # fmt: skip
    encoder = spawn("encoder", args, env, echo=False)
    children = [encoder]
    try:
        wait_ready([encoder], 300)
        gateway = spawn("gateway", ["gateway", "--port", "0", "--query", encoder.address,
                                    "--document", "127.0.0.1:9"], env, echo=False)  # fmt: skip
        children.insert(0, gateway)
        wait_ready([gateway], 120)
        rows = asyncio.run(_drive_encoder(cfg, encoder.address, texts))
        rows += asyncio.run(_drive_gateway(cfg, gateway.address, texts))
        return rows
    finally:
        stop_all(children, 5)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    systems = sorted({r["system"] for r in rows}, key=lambda s: s != "in_process")
    c1 = [next((r for r in rows if r["system"] == s and r["concurrency"] == 1), None)
          for s in systems]  # fmt: skip
    labels = [s for s, r in zip(systems, c1, strict=True) if r]
    vals = [r for r in c1 if r]
    x = np.arange(len(vals))
    left.bar(x - 0.2, [r["p50_ms"] for r in vals], 0.4, label="p50")
    left.bar(x + 0.2, [r["p99_ms"] for r in vals], 0.4, label="p99")
    left.set_xticks(x, labels)
    left.set_ylabel("ms per query (one in flight)")
    left.set_title("single-query latency")
    left.legend()
    for s in systems:
        pts = sorted((r["concurrency"], r["queries_per_s"]) for r in rows if r["system"] == s)
        if len(pts) > 1:
            right.plot(*zip(*pts, strict=True), "o-", label=s)
    right.set_xscale("log", base=2)
    right.set_xlabel("requests in flight")
    right.set_ylabel("queries / s")
    right.set_title("throughput")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(rows: list[dict[str, Any]], cfg: QueryBenchConfig, machine: str, model: str) -> str:
    floor = next(r for r in rows if r["system"] == "in_process")
    lines = ["## Query path", "", f"- command: `{cfg.command}`",
             f"- machine: {machine}; date: {today()}; model: {model}"]  # fmt: skip
    for system in ("encoder", "gateway"):
        r = next((r for r in rows if r["system"] == system and r["concurrency"] == 1), None)
        if r:
            extra = r["p50_ms"] - floor["p50_ms"]
            lines.append(
                f"- {system} p50 at concurrency 1: {r['p50_ms']:.2f} ms = in-process "
                f"{floor['p50_ms']:.2f} ms + {extra:.2f} ms"
            )
    lines += ["", markdown_table(rows, [
        ("system", "system"), ("concurrency", "in flight"), ("requests", "requests"),
        ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
        ("queries_per_s", "queries/s"), ("errors", "errors"),
    ]), "", "![query path](results/query_path.png)", ""]  # fmt: skip
    return "\n".join(lines)


def run_query_bench(cfg: QueryBenchConfig) -> dict[str, Any]:
    from aegis_serve.models.resolve import resolve_model

    model_dir = resolve_model(cfg.model)
    texts = query_texts(max(cfg.requests, 200))
    rows = [bench_in_process(cfg, model_dir, texts)]
    rows += bench_services(cfg, model_dir, texts)
    machine = machine_description()
    payload = {"machine": machine, "date": today(), "command": cfg.command,
               "model": model_dir.name, "rows": rows}  # fmt: skip
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
        batch_wait_ms=ns.batch_wait_ms, out_dir=Path(ns.out_dir),
        command="aegis-serve " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    for row in run_query_bench(cfg)["rows"]:
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
    return 0
