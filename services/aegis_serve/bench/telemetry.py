"""`aegis-serve bench telemetry`: what tracing + metrics cost on the query hot path.

Two identical stacks (a query encoder process behind a gateway process, same student model,
same threads) run side by side: one with telemetry off (no OTEL_* endpoint, no /metrics),
one with everything on — every span sampled and exported over OTLP/gRPC to a real receiver
in this process, OTLP metrics every few seconds, /metrics served and scraped. Rounds
alternate which stack goes first so drift in a shared machine's load hits both alike.
Results: docs/benchmarks.md section "observability_overhead",
docs/results/observability_overhead.json and .png.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aegis_serve.bench.driver import run_load
from aegis_serve.bench.peers import free_port
from aegis_serve.bench.query import query_texts, start_query_gateway
from aegis_serve.bench.report import (
    machine_description,
    markdown_table,
    today,
    write_json,
    write_section,
)
from aegis_serve.telemetry.receiver import OtlpReceiver

TARGET_OVERHEAD_PCT = 5.0


@dataclass
class TelemetryBenchConfig:
    """Bounded: rounds × (requests at concurrency 1 + throughput requests) per stack."""

    model: str = "builtin:query"
    threads: int = 0
    backend: str = "onnx"  # the query encoders' runtime (what `aegis-serve up` uses)
    rounds: int = 4
    requests: int = 150  # per round and stack, one in flight
    throughput_requests: int = 400  # per round and stack, `concurrency` in flight
    concurrency: int = 64
    scrape_interval_s: float = 5.0
    metric_export_interval_ms: int = 5000
    max_seconds: float = 60.0
    out_dir: Path = Path("docs")
    command: str = ""
    progress: bool = True


class Scraper:
    """Scrape /metrics pages on an interval in a thread, as a Prometheus server would."""

    def __init__(self, addresses: list[str], interval_s: float) -> None:
        self.addresses = addresses
        self.interval_s = interval_s
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for address in self.addresses:
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read()
                    self.scrapes += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _start_stacks(
    cfg: TelemetryBenchConfig, model_dir: Path, receiver: OtlpReceiver, stack: contextlib.ExitStack
) -> tuple[str, str, list[str]]:
    """(gateway off, gateway on, /metrics addresses of the 'on' stack)."""
    threads = cfg.threads or os.cpu_count() or 1
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base["HF_HUB_OFFLINE"] = "1"
    backend = ["--backend", cfg.backend]
    _, off = start_query_gateway(model_dir, threads, 1, base, stack, extra_args=(backend, []))
    on_env = {
        **base,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_METRIC_EXPORT_INTERVAL": str(cfg.metric_export_interval_ms),
    }
    ports = [free_port(), free_port()]
    extra = ([*backend, "--metrics-port", str(ports[0])], ["--metrics-port", str(ports[1])])
    _, on = start_query_gateway(model_dir, threads, 1, on_env, stack, extra_args=extra)
    return off, on, [f"127.0.0.1:{p}" for p in ports]


async def _measure(
    cfg: TelemetryBenchConfig, addresses: dict[str, str], texts: list[str]
) -> dict[str, dict[str, list[float]]]:
    from aegis_client import AsyncEmbedClient

    out: dict[str, dict[str, list[float]]] = {
        name: {"latencies": [], "qps": []} for name in addresses
    }
    async with contextlib.AsyncExitStack() as stack:
        calls: dict[str, Callable[[int], Any]] = {}
        for name, address in addresses.items():
            client = await stack.enter_async_context(AsyncEmbedClient(address, timeout=60))

            async def call(i: int, client: AsyncEmbedClient = client) -> int:
                await client.embed([texts[i % len(texts)]], "query")
                return 1

            for i in range(30):
                await call(i)
            calls[name] = call
        names = list(addresses)
        for r in range(cfg.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                res = await run_load(calls[name], cfg.requests, 1, max_seconds=cfg.max_seconds,
                                     label=f"round {r + 1} {name} c=1",
                                     progress=cfg.progress)  # fmt: skip
                out[name]["latencies"].extend(res.latencies)
            for name in order:
                res = await run_load(calls[name], cfg.throughput_requests, cfg.concurrency,
                                     max_seconds=cfg.max_seconds, progress=cfg.progress,
                                     label=f"round {r + 1} {name} c={cfg.concurrency}")  # fmt: skip
                out[name]["qps"].append(res.units_per_s)
    return out


def _rows(raw: dict[str, dict[str, list[float]]], cfg: TelemetryBenchConfig) -> list[dict]:
    rows = []
    for name, data in raw.items():
        lat = np.asarray(data["latencies"]) * 1000
        rows.append({
            "telemetry": name, "requests": int(lat.size),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "concurrency": cfg.concurrency, "queries_per_s": float(np.median(data["qps"])),
        })  # fmt: skip
    return rows


def plot(rows: list[dict[str, Any]], path: Path, concurrency: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["telemetry"] for r in rows]
    x = np.arange(len(rows))
    for offset, key in ((-0.25, "p50_ms"), (0.0, "p95_ms"), (0.25, "p99_ms")):
        left.bar(x + offset, [r[key] for r in rows], 0.25, label=key.replace("_ms", ""))
    left.set_xticks(x, names)
    left.set_ylabel("ms per query (one in flight)")
    left.set_title("gateway latency")
    left.legend()
    right.bar(x, [r["queries_per_s"] for r in rows], 0.5)
    right.set_xticks(x, names)
    right.set_ylabel("queries / s")
    right.set_title(f"throughput, {concurrency} in flight")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_telemetry_bench(cfg: TelemetryBenchConfig) -> dict[str, Any]:
    from aegis_serve.models.resolve import resolve_model

    model_dir = resolve_model(cfg.model)
    texts = query_texts(max(cfg.requests, 200))
    with OtlpReceiver() as receiver, contextlib.ExitStack() as stack:
        off, on, metrics = _start_stacks(cfg, model_dir, receiver, stack)
        with Scraper(metrics, cfg.scrape_interval_s) as scraper:
            started = time.monotonic()
            raw = asyncio.run(_measure(cfg, {"off": off, "on": on}, texts))
            wall = time.monotonic() - started
        time.sleep(1.0)  # let the last span batch arrive
        spans, points, scrapes = len(receiver.spans), len(receiver.metric_points), scraper.scrapes
    rows = _rows(raw, cfg)
    off_row, on_row = rows
    overhead = (on_row["p50_ms"] / off_row["p50_ms"] - 1) * 100
    payload = {
        "machine": machine_description(), "date": today(), "command": cfg.command,
        "model": model_dir.name, "rows": rows,
        "p50_overhead_pct": overhead,
        "throughput_change_pct": (on_row["queries_per_s"] / off_row["queries_per_s"] - 1) * 100,
        "target_p50_overhead_pct": TARGET_OVERHEAD_PCT,
        "exported": {"spans": spans, "metric_points": points, "scrapes": scrapes,
                     "wall_s": wall},
    }  # fmt: skip
    results = cfg.out_dir / "results"
    write_json(results / "observability_overhead.json", payload)
    plot(rows, results / "observability_overhead.png", cfg.concurrency)
    write_section(cfg.out_dir / "benchmarks.md", "observability_overhead", summarize(payload, cfg))
    return payload


def summarize(payload: dict[str, Any], cfg: TelemetryBenchConfig) -> str:
    overhead = payload["p50_overhead_pct"]
    verdict = "meets" if overhead <= TARGET_OVERHEAD_PCT else "misses"
    exp = payload["exported"]
    lines = [
        "## Observability overhead (tracing + metrics on vs off)", "",
        f"- command: `{payload['command']}`",
        f"- machine: {payload['machine']}; date: {payload['date']}; model: {payload['model']} "
        f"(backend {cfg.backend})",
        "- two identical stacks (query encoder process + gateway process) side by side; `on` "
        "samples and exports every span over OTLP/gRPC to a receiver in the bench process, "
        f"exports OTLP metrics every {cfg.metric_export_interval_ms / 1000:.0f} s and serves "
        f"/metrics, scraped every {cfg.scrape_interval_s:.0f} s; {cfg.rounds} alternating "
        "rounds",
        f"- gateway p50 at one query in flight: off {payload['rows'][0]['p50_ms']:.2f} ms, "
        f"on {payload['rows'][1]['p50_ms']:.2f} ms = **{overhead:+.1f}%** "
        f"({verdict} the ≤ {TARGET_OVERHEAD_PCT:.0f}% target)",
        f"- throughput at {cfg.concurrency} in flight (median of rounds): "
        f"{payload['throughput_change_pct']:+.1f}% with telemetry on",
        f"- exported while `on` ran: {exp['spans']:,} spans, {exp['metric_points']:,} metric "
        f"points, {exp['scrapes']} /metrics scrapes",
        "",
        markdown_table(payload["rows"], [
            ("telemetry", "telemetry"), ("requests", "requests (c=1)"), ("p50_ms", "p50 ms"),
            ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
            ("queries_per_s", f"queries/s at c={cfg.concurrency}"),
        ]),
        "",
        "![observability overhead](results/observability_overhead.png)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main_args(ns: Any) -> int:
    cfg = TelemetryBenchConfig(
        model=ns.model, threads=ns.threads, backend=ns.backend, rounds=ns.rounds,
        requests=ns.requests,
        throughput_requests=ns.throughput_requests, concurrency=ns.concurrency,
        out_dir=Path(ns.out_dir), command="aegis-serve " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    payload = run_telemetry_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
    print(f"p50 overhead {payload['p50_overhead_pct']:+.1f}% "
          f"(target ≤ {TARGET_OVERHEAD_PCT:.0f}%); exported {payload['exported']}")  # fmt: skip
    return 0
