"""The telemetry hot path after its cost cuts, and `aegis-lab bench telemetry-cost`.

- `LocalCounter` (counters summed in-process, read by the SDK at collection) exports what a
  synchronous OpenTelemetry counter exports: same name, unit, description, labels, a
  cumulative monotonic sum.
- Under a sampled caller the server span, its children and the queue span are still made,
  with the same names and parents; under an unsampled one nothing is exported while the
  metrics still count (run in a child process: a tracer provider is process-wide).
- The cost bench runs end to end at a tiny size (CPU-time counter), and its callgrind window
  counts what runs inside it only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from aegis_serve.telemetry.instruments import (
    METER_NAME,
    SECONDS_BUCKETS,
    TEXT_BUCKETS,
    LocalCounter,
    LocalHistogram,
    RpcInstruments,
    prometheus_reader,
)


def points(reader: InMemoryMetricReader) -> dict[str, object]:
    data = reader.get_metrics_data()
    scopes = [sm for rm in data.resource_metrics for sm in rm.scope_metrics]
    return {m.name: m for sm in scopes for m in sm.metrics}


def test_local_counter_exports_what_a_counter_exports() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    local = LocalCounter(meter, "t.local", "{request}", "requests")
    sdk = meter.create_counter("t.sdk", "{request}", "requests")
    labels = {"method": "Embed", "pool": "query", "status": "OK"}
    cell = local.bind(labels)
    assert local.bind(dict(labels)) is cell  # one cell per label set, whatever dict holds it
    for amount in (1, 2, -5, float("nan"), float("inf")):  # negative and non-finite dropped
        cell.add(amount)
        sdk.add(amount, labels)
    local.add(4, {"pool": "document"})
    sdk.add(4, {"pool": "document"})
    local.add(1)
    sdk.add(1)
    got = points(reader)
    mine, theirs = got["t.local"], got["t.sdk"]
    assert (mine.unit, mine.description) == (theirs.unit, theirs.description)
    assert mine.data.is_monotonic and theirs.data.is_monotonic
    assert mine.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert theirs.data.aggregation_temporality == AggregationTemporality.CUMULATIVE

    def by_labels(metric) -> dict:
        return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}

    assert (
        by_labels(mine)
        == by_labels(theirs)
        == {
            frozenset(labels.items()): 3,
            frozenset({"pool": "document"}.items()): 4,
            frozenset(): 1,
        }
    )
    cell.add(1)  # cumulative: the next collection reads the running total
    assert by_labels(points(reader)["t.local"])[frozenset(labels.items())] == 4


def test_rpc_instruments_bind_labels_once_and_record_both() -> None:
    reader = InMemoryMetricReader()
    rpc = RpcInstruments(MeterProvider(metric_readers=[reader]).get_meter("t"), "gw", "here")
    for seconds in (0.001, 0.002):
        rpc.record("Embed", "query", "OK", seconds)
    rpc.record("Embed", "none", "INVALID_ARGUMENT", 0.0005)
    assert len(rpc._bound) == 2
    got = points(reader)
    counts = {
        (p.attributes["pool"], p.attributes["status"]): p.value
        for p in got["aegis.gw.requests"].data.data_points
    }
    assert counts == {("query", "OK"): 2, ("none", "INVALID_ARGUMENT"): 1}
    hist = {p.attributes["status"]: p for p in got["aegis.gw.request.duration"].data.data_points}
    assert hist["OK"].count == 2 and hist["OK"].sum == pytest.approx(0.003)
    assert dict(hist["OK"].attributes) == {"method": "Embed", "pool": "query", "status": "OK"}


def two_pipelines() -> tuple[dict, dict]:
    """The same instruments on two meter providers with their own /metrics registries: one
    recording through the SDK, one aggregating locally (what `setup_telemetry` uses when
    /metrics is the only reader)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import CollectorRegistry

    resource = Resource.create({"service.name": "aegis-test"})
    out = []
    for local in (False, True):
        registry = CollectorRegistry()
        hists: dict[str, LocalHistogram] = {}
        reader = (
            prometheus_reader(resource, hists.values(), registry=registry)
            if local
            else PrometheusMetricReader(registry=registry)
        )
        meter = MeterProvider(metric_readers=[reader], resource=resource).get_meter(METER_NAME)
        hists["latency"] = LocalHistogram(meter, "aegis.t.latency", "s", "latency", SECONDS_BUCKETS)
        hists["size"] = LocalHistogram(meter, "aegis.t.size", "{text}", "texts", TEXT_BUCKETS)
        for h in hists.values():
            h.local = local
        out.append({"registry": registry, **hists})
    return out[0], out[1]


def exposition(registry) -> list[str]:
    from prometheus_client import generate_latest

    return sorted(generate_latest(registry).decode().splitlines())


def test_local_histograms_expose_exactly_what_the_sdk_exposes() -> None:
    sdk, local = two_pipelines()
    assert exposition(local["registry"]) == exposition(sdk["registry"])  # nothing recorded yet
    values = [0.0004, 0.001, 0.003, 0.003, 0.2, 7.5, 99.0, -1.0, float("nan"), float("inf")]
    for pipeline in (sdk, local):
        cells = {pool: pipeline["latency"].bind({"pool": pool}) for pool in ("query", "document")}
        for v in values:
            cells["query"].record(v)
        cells["document"].record(0.02)
        pipeline["latency"].bind({"pool": "never"})  # bound, never recorded: no series
        for n in (1, 1, 3, 64, 5000):
            pipeline["size"].record(n, {"pool": "query"})
    lines = exposition(local["registry"])
    assert lines == exposition(sdk["registry"])
    assert 'aegis_t_latency_seconds_count{otel_scope_name="aegis_serve",otel_scope_schema_url=""' \
        ',otel_scope_version="",pool="query"} 7.0' in lines  # fmt: skip
    assert not [line for line in lines if 'pool="never"' in line]
    assert any(line.startswith("aegis_t_size_bucket{") and 'le="4"' in line for line in lines)


def test_local_histograms_are_collected_when_nothing_else_is() -> None:
    _, local = two_pipelines()
    local["size"].record(2, {"pool": "query"})
    assert any(line.startswith("aegis_t_size_count") for line in exposition(local["registry"]))


SPAN_TREE_SCRIPT = textwrap.dedent(
    """
    import json
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    from aegis_serve.telemetry import rpc
    from aegis_serve.telemetry.instruments import encoder_instruments

    class Context:
        def __init__(self, flags):
            tp = f"00-{'ab' * 16}-{'cd' * 8}-{flags}"
            self.metadata = (("user-agent", "test"), ("traceparent", tp))

        def invocation_metadata(self):
            return self.metadata

    out = {}
    for flags in ("01", "00"):
        with rpc.RpcScope(encoder_instruments(), "svc", "Encode", Context(flags), "query") as s:
            with rpc.span("tokenize", **{"aegis.texts": 1}) as child:
                inner = child.get_span_context().span_id
            rpc.record_span("queue", 1, 2, **{"aegis.texts": 1})
            out[flags] = {
                "recording": s.span.is_recording(),
                "child_is_server": inner == s.span.get_span_context().span_id,
                "injected": dict(rpc.inject_metadata()).get("traceparent", ""),
            }
        out[flags]["spans"] = [
            [sp.name, sp.kind.name, format(sp.parent.span_id, "016x") if sp.parent else "",
             format(sp.context.trace_id, "032x"),
             format(sp.context.span_id, "016x")]
            for sp in spans.get_finished_spans()
        ]
        spans.clear()
    data = reader.get_metrics_data()
    out["requests"] = [
        [dict(p.attributes), p.value]
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "aegis.encoder.requests" for p in m.data.data_points
    ]
    print(json.dumps(out))
    """
)


def test_sampled_callers_get_the_span_tree_unsampled_ones_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SPAN_TREE_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    sampled, unsampled = out["01"], out["00"]
    assert sampled["recording"] and not sampled["child_is_server"]
    names = {name: (kind, parent, trace_id) for name, kind, parent, trace_id, _ in sampled["spans"]}
    assert set(names) == {"svc/Encode", "tokenize", "queue"}
    server_id = next(sid for name, *_, sid in sampled["spans"] if name == "svc/Encode")
    assert names["svc/Encode"] == ("SERVER", "cd" * 8, "ab" * 16)  # continues the caller
    assert names["tokenize"] == ("INTERNAL", server_id, "ab" * 16)
    assert names["queue"] == ("INTERNAL", server_id, "ab" * 16)
    # Unsampled: no span at all, the child is the server span itself, and the context that
    # goes on still says "not sampled" (so downstream does not sample on its own).
    assert not unsampled["recording"] and unsampled["child_is_server"]
    assert unsampled["spans"] == []
    injected = unsampled["injected"]
    assert injected.startswith(f"00-{'ab' * 16}-") and injected.endswith("-00")
    assert out["requests"] == [[{"method": "Encode", "pool": "query", "status": "OK"}, 2]]


PROVIDERS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.resources import Resource
    from aegis_serve.telemetry.providers import setup_telemetry

    import urllib.request
    from aegis_serve.telemetry.instruments import encoder_instruments

    tele = setup_telemetry("aegis-test", metrics_port=int(sys.argv[1]))
    sdk_config = metrics.get_meter_provider()._sdk_config
    resource = trace.get_tracer_provider().resource if tele.traces_to else sdk_config.resource
    instruments = encoder_instruments()
    instruments.batch_size.bind({"pool": "query"}).record(3)
    instruments.record("Encode", "query", "OK", 0.002)
    url = f"http://{tele.metrics_address}/metrics"
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    print(json.dumps({
        "exemplar_filter": type(sdk_config.exemplar_filter).__name__,
        "local_histograms": instruments.batch_size.local,
        "hash_as_sdk": hash(resource) == Resource.__hash__(resource),
        "equal": resource == Resource(resource.attributes, resource.schema_url),
        "service": resource.attributes["service.name"],
        "series": sorted(
            line.split("{")[0] + " " + line.split()[-1] for line in page.splitlines()
            if line.startswith(("aegis_encoder_batch_size_count", "aegis_encoder_requests_total",
                                "aegis_encoder_request_duration_seconds_count"))
        ),
    }))
    sys.stdout.flush()
    os._exit(0)  # no shutdown: the OTLP endpoint is not listening
    """
)


@pytest.mark.parametrize(
    ("env", "exemplars", "local"),
    [
        ({}, "AlwaysOffExemplarFilter", True),  # /metrics only: exemplars would be dropped
        ({"OTEL_METRICS_EXEMPLAR_FILTER": "trace_based"}, "TraceBasedExemplarFilter", True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_METRICS_EXPORTER": "otlp"},
         "TraceBasedExemplarFilter", False),  # OTLP carries exemplars: the SDK's histograms
    ],
)  # fmt: skip
def test_providers_choose_histograms_and_exemplars_by_reader(
    env: dict[str, str], exemplars: str, local: bool
) -> None:
    """Which histogram path and exemplar filter each reader setup gets; /metrics shows the
    same series either way; the resource hashes as the SDK's does."""
    from aegis_lab.bench.peers import free_port

    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", PROVIDERS_SCRIPT, str(free_port())],
        capture_output=True, text=True, timeout=60, env={**base, **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "exemplar_filter": exemplars, "local_histograms": local, "hash_as_sdk": True,
        "equal": True, "service": "aegis-test",
        "series": ["aegis_encoder_batch_size_count 1.0",
                   "aegis_encoder_request_duration_seconds_count 1.0",
                   "aegis_encoder_requests_total 1.0"],
    }  # fmt: skip


def test_cost_bench_runs_every_variant_at_a_tiny_size(tmp_path: Path) -> None:
    from aegis_lab.bench.telemetry_cost import CostConfig, run_cost_bench, summarize

    cfg = CostConfig(
        requests=6, warmup=2, sampling=[1.0], counter="cpu", model_calls=0, out_dir=tmp_path,
        command="test",
    )  # fmt: skip
    payload = run_cost_bench(cfg)
    rows = {r["telemetry"]: r for r in payload["rows"]}
    assert list(rows) == ["off", "on, 100% sampled"]
    assert rows["off"]["sampled_requests"] == 0
    assert rows["on, 100% sampled"]["sampled_requests"] == 6  # warm-up calls are not counted
    assert all(r["cpu_us_per_request"] > 0 for r in rows.values())
    assert payload["model_cost"] == {}  # model_calls=0: the forward pass is not counted apart
    saved = json.loads((tmp_path / "results/telemetry_cost.json").read_text())
    assert saved["rows"] == payload["rows"]
    assert "overhead %" in summarize(payload)


COUNTED_SCRIPT = textwrap.dedent(
    """
    import ctypes, sys
    lib = ctypes.CDLL(sys.argv[1])
    sum(range(200_000))  # outside the window: not counted
    lib.aegis_cost_start()
    sum(range(int(sys.argv[2])))
    lib.aegis_cost_stop()
    sum(range(200_000))
    """
)


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("cc") is None, reason="valgrind or cc missing"
)
def test_callgrind_counts_the_window_only(tmp_path: Path) -> None:
    from aegis_lab.bench.telemetry_cost import _counted_instructions, build_helper

    helper = build_helper(tmp_path)
    counts = []
    for n in (10_000, 110_000):
        out = tmp_path / f"cg.{n}.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, "-c", COUNTED_SCRIPT, helper, str(n)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        counts.append(_counted_instructions(out))
    # 100,000 more loop steps inside the window: tens of instructions each, nothing else.
    per_step = (counts[1] - counts[0]) / 100_000
    assert 5 < per_step < 200, counts
    assert counts[0] < 50 * 10_000 + 2_000_000, counts
