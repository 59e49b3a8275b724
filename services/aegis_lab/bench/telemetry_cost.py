"""`aegis-lab bench telemetry-cost`: what telemetry costs per Embed call, in CPU instructions.

A deterministic complement to `aegis-lab bench telemetry`, not a replacement: that bench
times real processes and needs an idle machine; this one counts instructions, which do not
depend on the machine's load, so a before/after comparison holds on a busy machine. They are
not time (cache misses, lock waits, the second process and the network are not in them), so
the timed bench stays the measure of record for the p50 target.

Each variant (telemetry off, then the OpenTelemetry SDK on at each head-sampling ratio) is
one child process under Valgrind's callgrind: it starts an encoder (the query model, one
thread) and a gateway on 127.0.0.1 in-process, sends warm-up calls through the real
`AsyncEmbedClient` (half of them under a sampled caller, so the sampled path and the first
export run before counting), then counts every thread's instructions over N sequential Embed
calls. Inside the window the model's forward pass is a constant stub (the same code in every
variant, and ~90% of the instructions otherwise); another child counts the real forward pass
of single queries once, to state the overhead over the whole request too. The trace id of
each request is drawn from a per-request seed, so every variant and every code version
samples the same requests; the heap is frozen out of the garbage collector's reach before
the window (a full collection landing inside it or not would swing the count by ~2×).

The `on` variants are configured like the timed bench's: spans sampled by
`parentbased_traceidratio` and exported over OTLP/gRPC to a receiver in the parent process
(spans still queued are flushed inside the window, so their export is counted), metrics on a
Prometheus reader behind a /metrics port, one page rendered inside the window. `--counter
cpu` counts process CPU time instead (no Valgrind; load-dependent: for tests only).

Results: stdout and docs/results/telemetry_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "TELEMETRY_COST "
GATEWAY_SPAN = "aegis.embed.v1.EmbedService/Embed"
# Instrumentation on/off is process-wide (ZERO/DUMP_STATS act on the calling thread only, so
# they are not used): the count at exit is everything every thread ran inside the window.
_HELPER_C = r"""
#include <valgrind/callgrind.h>
void aegis_cost_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void aegis_cost_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


@dataclass
class CostConfig:
    """One child process per variant: off, then one per head-sampling ratio."""

    model: str = "builtin:query"
    backend: str = "onnx"
    sampling: list[float] = field(default_factory=lambda: [0.1, 1.0])
    requests: int = 200
    warmup: int = 20
    counter: str = "callgrind"  # or "cpu"
    stub_model: bool = True  # constant rows in the measured calls; the model counted apart
    model_calls: int = 5  # real forward passes counted apart (off variant)
    seed: int = 0  # trace ids come from `random`: same seed, same sampled requests
    out_dir: Path | None = Path("docs")
    command: str = ""
    timeout_s: float = 900.0


def variant_name(ratio: float | None) -> str:
    return "off" if ratio is None else f"on, {ratio:.0%} sampled"


# ----------------------------------------------------------------- child side
class _Counter:
    """Brackets the measured window: callgrind's client requests, or process CPU time."""

    def __init__(self, kind: str, helper: str) -> None:
        self.kind = kind
        self._lib = ctypes.CDLL(helper) if kind == "callgrind" else None
        self.cpu_s = 0.0

    def start(self) -> None:
        if self._lib is not None:
            self._lib.aegis_cost_start()
        self.cpu_s = time.process_time()

    def stop(self) -> float:
        """Ends the window (one per process); the CPU seconds it took."""
        if self._lib is not None:
            self._lib.aegis_cost_stop()
        self.cpu_s = time.process_time() - self.cpu_s
        return self.cpu_s


def _load_embedder(spec: dict[str, Any]) -> Any:
    from aegis_serve.encoder.server import load_embedder
    from aegis_serve.settings import EncoderSettings

    settings = EncoderSettings(
        model=spec["model_dir"], role="query", threads=1, backend=spec["backend"]
    )
    return load_embedder(settings)


def _stub_model(embedder: Any) -> None:
    """Replace the forward pass by constant unit rows: the same for every variant, and the
    part that would dominate (and slow callgrind ~50×) is measured once on its own."""
    import numpy as np

    row = np.full(embedder.dim, embedder.dim**-0.5, dtype=np.float32)
    embedder.collate = lambda items: len(items)
    embedder.forward = lambda n, layers=0: np.tile(row, (n, 1))


def _model_window(embedder: Any, texts: list[str], counter: _Counter) -> float:
    """The counted window of this child: the real forward pass of single queries (tokenized
    before it), one after the other."""
    batches = [embedder.collate(embedder.tokenize([t])) for t in texts]
    embedder.forward(batches[0])  # warm
    counter.start()
    for batch in batches:
        embedder.forward(batch)
    return counter.stop()


@contextlib.contextmanager
def _caller_sampled(sampled: bool) -> Iterator[None]:
    """Warm-up calls made under a sampled caller span (the client injects its context), so
    that the sampled path, the exporter's first export and its lazy imports all run before
    the counted window whatever the ratio; the other warm-up calls start their own trace."""
    if not sampled:
        yield
        return
    from opentelemetry import context, trace

    parent = trace.SpanContext(
        random.getrandbits(128) or 1, random.getrandbits(64) or 1, is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )  # fmt: skip
    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    try:
        yield
    finally:
        context.detach(token)


async def _workload(spec: dict[str, Any], counter: _Counter) -> dict[str, Any]:
    from aegis_client import AsyncEmbedClient
    from aegis_lab.bench.query import query_texts
    from aegis_serve.encoder.server import start_encoder
    from aegis_serve.gateway.server import start_gateway
    from aegis_serve.settings import EncoderSettings, GatewaySettings

    texts = query_texts(spec["requests"] + spec["warmup"])
    embedder = await asyncio.to_thread(_load_embedder, spec)
    if spec["model_calls"]:  # this child counts the real forward pass only
        calls = texts[spec["warmup"] : spec["warmup"] + spec["model_calls"]]
        return {"cpu_s": await asyncio.to_thread(_model_window, embedder, calls, counter)}
    out: dict[str, Any] = {}
    if spec["stub"]:
        _stub_model(embedder)
    enc_settings = EncoderSettings(
        model=spec["model_dir"], role="query", port=0, threads=1, backend=spec["backend"],
        shutdown_grace_s=0,
    )  # fmt: skip
    handle, encoder = await start_encoder(enc_settings, embedder)
    address = f"127.0.0.1:{handle.port}"
    # Both pools on the one encoder (queries only are sent); no probe inside the window.
    gw_settings = GatewaySettings(
        query=[address], document=[address], port=0, health_interval_s=3600, shutdown_grace_s=0
    )
    runtime = await start_gateway(gw_settings)
    flush = spec.get("flush")
    try:
        async with AsyncEmbedClient(
            f"127.0.0.1:{runtime.port}", timeout=600, max_attempts=1
        ) as client:
            for i, text in enumerate(texts[: spec["warmup"]]):
                with _caller_sampled(i % 2 == 0):
                    await client.embed([text], "query")
            if flush:
                flush()
            # The heap (torch, transformers: millions of objects) is frozen out of the
            # collector's reach, else one full collection falling in the window or not
            # (it depends on how much was allocated before) swings the count by ~2x.
            gc.collect()
            gc.freeze()
            out["started_ns"] = time.time_ns()
            counter.start()
            for i, text in enumerate(texts[spec["warmup"] :]):
                # A request's trace id is the first id drawn in it: seeding per request keeps
                # the sampled set the same whatever else draws ids (a fair before/after).
                random.seed(spec["seed"] * 1_000_003 + i)
                await client.embed([text], "query")
            if spec.get("scrape"):
                spec["scrape"]()  # one /metrics page rendered (collection cost counted too)
            if flush:
                flush()  # the window's spans, exported inside it
            out["cpu_s"] = counter.stop()
            out["ended_ns"] = time.time_ns()
    finally:
        await runtime.handle.server.stop(0)
        await runtime.close()
        await handle.server.stop(0)
        await encoder.close()
    return out


def child_main(spec: dict[str, Any]) -> None:
    """One variant, in this process (run under callgrind by the parent)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    ratio = spec["ratio"]
    tele = None
    if ratio is not None:
        os.environ.update({
            "OTEL_EXPORTER_OTLP_ENDPOINT": spec["endpoint"],
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        })  # fmt: skip
        from aegis_lab.bench.peers import free_port
        from aegis_serve.telemetry.providers import setup_telemetry

        tele = setup_telemetry("aegis-cost", metrics_port=free_port())
        from opentelemetry import trace
        from prometheus_client import REGISTRY, generate_latest

        spec["flush"] = trace.get_tracer_provider().force_flush
        spec["scrape"] = lambda: generate_latest(REGISTRY)
    counter = _Counter(spec["counter"], spec.get("helper", ""))
    result = asyncio.run(_workload(spec, counter))
    if tele is not None:
        tele.shutdown()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------- parent side
def build_helper(directory: Path) -> str:
    """The shared object whose two functions issue callgrind's client requests."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("valgrind") is None:
        raise SystemExit("--counter callgrind needs valgrind and a C compiler (cc)")
    src = directory / "aegis_cost.c"
    src.write_text(_HELPER_C)
    out = directory / "aegis_cost.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return str(out)


def _counted_instructions(path: Path) -> int:
    """Instructions (Ir) callgrind counted in the process: the `totals:` line of its dump at
    exit (its `summary:` line reads 0 when instrumentation was started by a client request)."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {path}")


def _run_child(cfg: CostConfig, spec: dict[str, Any], tag: str, work: Path) -> dict[str, Any]:
    """One child process; its result, with `instructions` counted inside its window."""
    argv = [sys.executable, "-m", "aegis_lab.bench.telemetry_cost", "--child", json.dumps(spec)]
    out_file = work / f"callgrind.{tag}.out"
    if cfg.counter == "callgrind":
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out_file}", *argv]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=cfg.timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{tag}: child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if cfg.counter == "callgrind":
        result["instructions"] = _counted_instructions(out_file)
    return result


def _spec(cfg: CostConfig, ratio: float | None, model_dir: Path, endpoint: str, helper: str):
    return {
        "ratio": ratio, "endpoint": endpoint, "model_dir": str(model_dir),
        "backend": cfg.backend, "requests": cfg.requests, "warmup": cfg.warmup,
        "counter": cfg.counter, "helper": helper, "seed": cfg.seed, "stub": cfg.stub_model,
        "model_calls": 0,
    }  # fmt: skip


def run_variant(
    cfg: CostConfig, ratio: float | None, model_dir: Path, endpoint: str, work: Path, helper: str
) -> dict[str, Any]:
    """One variant's child process: a row with instructions (and CPU µs) per request."""
    tag = "off" if ratio is None else f"r{ratio:g}"
    result = _run_child(cfg, _spec(cfg, ratio, model_dir, endpoint, helper), tag, work)
    row: dict[str, Any] = {"telemetry": variant_name(ratio), "sampling": ratio}
    row["requests"] = cfg.requests
    if "instructions" in result:
        row["instructions_per_request"] = result["instructions"] / cfg.requests
    else:  # CPU time means nothing under callgrind (~50x slower): only kept without it
        row["cpu_us_per_request"] = result["cpu_s"] / cfg.requests * 1e6
    row["window_ns"] = (result["started_ns"], result["ended_ns"])
    return row


def model_cost(cfg: CostConfig, model_dir: Path, work: Path, helper: str) -> dict[str, float]:
    """The real forward pass of one query, counted in a child of its own."""
    spec = {**_spec(cfg, None, model_dir, "", helper), "model_calls": cfg.model_calls}
    result = _run_child(cfg, spec, "model", work)
    if "instructions" in result:
        return {"instructions_per_request": result["instructions"] / cfg.model_calls}
    return {"cpu_us_per_request": result["cpu_s"] / cfg.model_calls * 1e6}


def run_cost_bench(cfg: CostConfig) -> dict[str, Any]:
    from aegis_lab.bench.report import machine_description, today, write_json
    from aegis_lab.otlp_receiver import OtlpReceiver
    from aegis_serve.models.resolve import resolve_model

    model_dir = resolve_model(cfg.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="aegis-cost-") as tmp, OtlpReceiver() as receiver:
        work = Path(tmp)
        helper = build_helper(work) if cfg.counter == "callgrind" else ""
        for ratio in [None, *cfg.sampling]:
            row = run_variant(cfg, ratio, model_dir, receiver.endpoint, work, helper)
            start, end = row.pop("window_ns")
            row["sampled_requests"] = sum(
                1 for s in receiver.spans
                if s.name == GATEWAY_SPAN and start <= s.start_ns <= end
            )  # fmt: skip
            rows.append(row)
        counted = cfg.stub_model and cfg.model_calls > 0
        model = model_cost(cfg, model_dir, work, helper) if counted else {}
    unit = "instructions" if cfg.counter == "callgrind" else "cpu_us"
    key = f"{unit}_per_request"
    off = rows[0][key]
    for row in rows:
        added = row[key] - off
        row[f"added_{key}"] = added
        row["overhead_pct"] = added / off * 100
        if model:  # the real forward pass counted once, the same in every variant
            row["overhead_with_model_pct"] = added / (off + model[key]) * 100
    payload = {
        "machine": machine_description(), "date": today(), "command": cfg.command,
        "model": model_dir.name, "backend": cfg.backend, "counter": cfg.counter,
        "stub_model": cfg.stub_model, "model_calls": cfg.model_calls, "model_cost": model,
        "requests": cfg.requests, "warmup": cfg.warmup, "seed": cfg.seed, "rows": rows,
    }  # fmt: skip
    if cfg.out_dir is not None:
        write_json(cfg.out_dir / "results" / "telemetry_cost.json", payload)
    return payload


def summarize(payload: dict[str, Any]) -> str:
    from aegis_lab.bench.report import markdown_table

    unit = "instructions" if payload["counter"] == "callgrind" else "cpu_us"
    label = "instructions" if unit == "instructions" else "CPU µs (load-dependent)"
    columns = [
        ("telemetry", "telemetry"), ("sampled_requests", "sampled"),
        (f"{unit}_per_request", f"{label} / request"),
        (f"added_{unit}_per_request", "added by telemetry"),
        ("overhead_pct", "overhead %"),
    ]  # fmt: skip
    lines = [
        "## Telemetry cost per Embed call", "",
        f"- command: `{payload['command']}`",
        f"- machine: {payload['machine']}; date: {payload['date']}; model: {payload['model']} "
        f"(backend {payload['backend']}, 1 thread); counter: {payload['counter']}",
        f"- {payload['requests']} sequential Embed calls (after {payload['warmup']} warm-up "
        "calls) from the client through the gateway to the encoder, all in one process, every "
        "thread counted; `on`: SDK tracer (`parentbased_traceidratio`, OTLP/gRPC export) and "
        "Prometheus reader",
    ]  # fmt: skip
    if payload["model_cost"]:
        columns.append(("overhead_with_model_pct", "overhead % with the model"))
        model = payload["model_cost"].get(f"{unit}_per_request", 0)
        lines.append(
            "- the forward pass is a constant stub in the measured calls (it is the same code "
            f"in every variant); the real one, counted apart over {payload['model_calls']} "
            f"single queries, costs {model:,.0f} {label} per query: `overhead %` is over the "
            "serving stack alone, `with the model` over stack + forward pass"
        )
    lines += ["", markdown_table(payload["rows"], columns), ""]
    return "\n".join(lines)


def main_args(ns: Any) -> int:
    cfg = CostConfig(
        model=ns.model, backend=ns.backend, requests=ns.requests, warmup=ns.warmup,
        sampling=[float(x) for x in ns.sampling.split(",") if x], counter=ns.counter,
        stub_model=not ns.real_model, model_calls=ns.model_calls,
        out_dir=Path(ns.out_dir), command="aegis-lab " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    print(summarize(run_cost_bench(cfg)))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    child_main(json.loads(parser.parse_args().child))
