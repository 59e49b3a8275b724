"""Traces, metrics and logs from real gateway and encoder processes.

A real OTLP/gRPC receiver (opentelemetry-proto service definitions) listens on 127.0.0.1;
the processes export to it through the standard OTEL_* variables. The test checks that one
trace id covers client → gateway → encoder with the right parent links, that the batch
span links the request span it served, that /metrics (parsed by prometheus_client's own
parser) moves by exactly what was sent, and that JSON logs carry the trace id but never
the input text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from aegis_client import AegisError, EmbedClient
from aegis_lab.bench.peers import free_port
from aegis_lab.otlp_receiver import OtlpReceiver, ReceivedSpan
from conftest import ServiceProcess, wait_until

SECRET = "zebra-secret-7731 never logged"
DASHBOARD = Path(__file__).resolve().parent.parent / "docs/observability/grafana-dashboard.json"
# Counters that appear only after their first event (the dashboard still charts them).
EVENT_COUNTERS = {
    "aegis_gateway_fallbacks_total", "aegis_gateway_encoder_retries_total",
    "aegis_encoder_dropped_texts_total",
}  # fmt: skip
GATEWAY = "aegis.embed.v1.EmbedService"
ENCODER = "aegis.encoder.v1.EncoderService"


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by (sample name, sorted labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced_stack(receiver: OtlpReceiver, student_dir: Path):
    """Query + document encoders (the student dir, one space) and a gateway, as processes."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_METRICS_EXPORTER": "otlp",  # as well as /metrics (else /metrics only)
    }
    procs: list[ServiceProcess] = []
    try:
        for role in ("query", "document"):
            args = ["encoder", "--role", role, "--model", str(student_dir), "--port", "0",
                    "--threads", "1", "--metrics-port", str(free_port()), "--log-json"]  # fmt: skip
            procs.append(ServiceProcess(args, env=env))
        query, document = procs
        args = ["gateway", "--port", "0", "--query", query.address,
                "--document", document.address, "--metrics-port", str(free_port()),
                "--log-json", "--health-interval-s", "60"]  # fmt: skip
        gateway = ServiceProcess(args, env=env)
        procs.append(gateway)
        yield {"query": query, "document": document, "gateway": gateway}
    finally:
        for p in procs:
            p.kill()


def metrics_address(proc: ServiceProcess) -> str:
    line = next(line for line in proc.lines if line.startswith("READY "))
    return next(p.split("=", 1)[1] for p in line.split() if p.startswith("metrics="))


def by_name(spans: list[ReceivedSpan], name: str, service: str | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and (service is None or s.service == service)]
    assert len(found) == 1, f"{name}: {[(s.name, s.service) for s in spans]}"
    return found[0]


def test_one_trace_covers_client_gateway_encoder(traced_stack, receiver: OtlpReceiver) -> None:
    provider = TracerProvider()  # the caller's own SDK; the client injects its context
    gateway = traced_stack["gateway"]
    with (
        EmbedClient(gateway.address) as client,
        provider.get_tracer("test-caller").start_as_current_span("caller") as caller,
    ):
        result = client.embed(["what is a zebra", "striped horses"], "query")
    assert result.embeddings.shape == (2, 384)
    trace_id = format(caller.get_span_context().trace_id, "032x")
    caller_id = format(caller.get_span_context().span_id, "016x")
    expected = {  # (+ the encoder's batch span, checked below)
        ("aegis-gateway", f"{GATEWAY}/Embed"), ("aegis-gateway", "validate"),
        ("aegis-gateway", "route"), ("aegis-gateway", f"{ENCODER}/Encode"),
        ("aegis-gateway", "postprocess"), ("aegis-encoder-query", f"{ENCODER}/Encode"),
        ("aegis-encoder-query", "tokenize"), ("aegis-encoder-query", "queue"),
    }  # fmt: skip
    assert wait_until(
        lambda: expected <= {(s.service, s.name) for s in receiver.trace(trace_id)}, timeout=15
    )
    spans = receiver.trace(trace_id)

    server = by_name(spans, f"{GATEWAY}/Embed")
    assert server.service == "aegis-gateway"
    assert server.kind == SpanKind.SERVER.value + 1  # OTLP enum is offset by UNSPECIFIED
    assert server.parent_span_id == caller_id
    assert server.attributes["aegis.pool"] == "query"
    assert server.attributes["rpc.grpc.status_code"] == 0
    for child in ("validate", "route", "postprocess"):
        assert by_name(spans, child, "aegis-gateway").parent_span_id == server.span_id
    attempt = by_name(spans, f"{ENCODER}/Encode", "aegis-gateway")
    assert attempt.kind == SpanKind.CLIENT.value + 1
    assert attempt.parent_span_id == server.span_id

    encode = by_name(spans, f"{ENCODER}/Encode", "aegis-encoder-query")
    assert encode.kind == SpanKind.SERVER.value + 1
    assert encode.parent_span_id == attempt.span_id
    for child in ("tokenize", "queue"):
        span = by_name(spans, child, "aegis-encoder-query")
        assert span.parent_span_id == encode.span_id
        assert server.start_ns <= span.start_ns <= span.end_ns <= server.end_ns
    (event,) = [attrs for name, attrs in encode.events if name == "batch"]
    batch_trace, batch_span = event["aegis.batch.trace_id"], event["aegis.batch.span_id"]

    # The forward pass: a child of the first sampled request's Encode span (here: ours),
    # linking every sampled request span it served.
    assert wait_until(lambda: any(s.span_id == batch_span for s in receiver.spans), timeout=10)
    batch = next(s for s in receiver.spans if s.span_id == batch_span)
    assert batch.name == "aegis.encoder.batch" and batch.trace_id == batch_trace == trace_id
    assert batch.parent_span_id == encode.span_id
    assert (trace_id, encode.span_id) in batch.links
    assert batch.attributes["aegis.batch.texts"] >= 2


def test_error_status_is_on_the_span(traced_stack, receiver: OtlpReceiver) -> None:
    provider = TracerProvider()
    with (
        EmbedClient(traced_stack["gateway"].address) as client,
        provider.get_tracer("t").start_as_current_span("caller") as caller,
        pytest.raises(AegisError),
    ):
        client.embed(["ok", ""], "query")
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert wait_until(
        lambda: any(s.name == f"{GATEWAY}/Embed" for s in receiver.trace(trace_id)), timeout=15
    )
    server = by_name(receiver.trace(trace_id), f"{GATEWAY}/Embed")
    assert server.status_code == 2  # STATUS_CODE_ERROR
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert not [s for s in receiver.trace(trace_id) if s.service.startswith("aegis-encoder")]


def test_metrics_move_by_what_was_sent(traced_stack, receiver: OtlpReceiver) -> None:
    gw_metrics = metrics_address(traced_stack["gateway"])
    q_metrics = metrics_address(traced_stack["query"])
    before_gw, before_q = scrape(gw_metrics), scrape(q_metrics)
    tokens = 0
    with EmbedClient(traced_stack["gateway"].address) as client:
        for i in range(3):
            tokens += client.embed([f"query number {i}", "a second text"], "query").input_tokens
        with pytest.raises(AegisError):
            client.embed([], "query")
        docs = client.embed(["a document", "another one", "a third"], "document")
    after_gw, after_q = scrape(gw_metrics), scrape(q_metrics)

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "Embed", "status": "OK"}
    assert delta(after_gw, before_gw, "aegis_gateway_requests_total", pool="query", **ok) == 3
    assert delta(after_gw, before_gw, "aegis_gateway_requests_total", pool="document", **ok) == 1
    assert (
        delta(after_gw, before_gw, "aegis_gateway_requests_total", status="INVALID_ARGUMENT") == 1
    )
    assert (
        delta(after_gw, before_gw, "aegis_gateway_request_duration_seconds_count", method="Embed")
        == 5
    )
    assert delta(after_gw, before_gw, "aegis_gateway_inputs_total", pool="query") == 6
    assert delta(after_gw, before_gw, "aegis_gateway_input_tokens_total", pool="query") == tokens
    assert delta(after_gw, before_gw, "aegis_gateway_input_tokens_total", pool="document") == (
        docs.input_tokens
    )
    assert value(after_gw, "aegis_gateway_replicas_healthy", pool="query") == 1
    assert value(after_gw, "aegis_gateway_replicas", pool="document") == 1

    enc_ok = {"method": "Encode", "status": "OK", "pool": "query"}
    assert delta(after_q, before_q, "aegis_encoder_requests_total", **enc_ok) == 3
    assert delta(after_q, before_q, "aegis_encoder_input_tokens_total") == tokens
    assert delta(after_q, before_q, "aegis_encoder_batch_size_sum") == 6
    assert delta(after_q, before_q, "aegis_encoder_batch_tokens_sum") == tokens
    assert delta(after_q, before_q, "aegis_encoder_queue_wait_seconds_count") == 3
    assert value(after_q, "aegis_encoder_queue_depth", pool="query") == 0
    assert value(after_q, "process_resident_memory_bytes") > 0  # prometheus_client's own

    # The same instruments reach the OTLP receiver.
    wanted = {"aegis.gateway.requests", "aegis.gateway.request.duration",
              "aegis.encoder.batch.size", "aegis.encoder.queue.depth",
              "aegis.gateway.replicas.healthy"}  # fmt: skip
    assert wait_until(lambda: wanted <= receiver.metric_names, timeout=15), receiver.metric_names


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_dashboard_queries_only_exported_metrics(traced_stack) -> None:
    exported = set()
    for name in ("gateway", "query"):
        exported |= {n for n, _ in scrape(metrics_address(traced_stack[name]))}
    used = {m for expr in dashboard_queries() for m in re.findall(r"\b(?:aegis|process)_\w+", expr)}
    assert used, "no metric in the dashboard"
    assert used - exported <= EVENT_COUNTERS, sorted(used - exported - EVENT_COUNTERS)


def prom_api(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 400 with a JSON body for a bad query
        return json.loads(exc.read())
    except OSError:
        return {"status": "unreachable", "data": {"result": []}}


def prom_query(port: int, expr: str) -> list[dict]:
    return prom_api(port, expr).get("data", {}).get("result", [])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian `prometheus` not installed")
def test_a_real_prometheus_server_scrapes_every_process(traced_stack, tmp_path: Path) -> None:
    """The documented local setup (docs/observability.md), with a 1 s scrape interval."""
    targets = [metrics_address(traced_stack[name]) for name in ("gateway", "query", "document")]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: aegis\n"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    port = free_port()
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(prom_query(port, "up == 1")) == 3, timeout=30, every=0.5)
        with EmbedClient(traced_stack["gateway"].address) as client:
            for i in range(4):
                client.embed([f"prometheus probe {i}"], "document")
        expr = 'sum(aegis_gateway_requests_total{method="Embed",pool="document",status="OK"})'

        def counted() -> float:
            result = prom_query(port, expr)
            return float(result[0]["value"][1]) if result else 0.0

        assert wait_until(lambda: counted() >= 4, timeout=20, every=0.5), counted()
        pools = prom_query(port, "aegis_gateway_replicas_healthy")
        assert {r["metric"]["pool"]: r["value"][1] for r in pools} == {
            "query": "1",
            "document": "1",
        }
        # Prometheus scrapes each target on its own clock: the gateway's count can land
        # before the document encoder's next scrape, so wait for the encoder's series too.
        assert wait_until(
            lambda: bool(prom_query(port, "aegis_encoder_batch_size_count")), timeout=20, every=0.5
        )
        for expr in dashboard_queries():
            answer = prom_api(port, expr)
            assert answer["status"] == "success", (expr, answer)
    finally:
        server.terminate()
        server.wait(10)


def test_fallback_is_counted_and_logged_with_the_trace_id(
    traced_stack, receiver: OtlpReceiver
) -> None:
    gateway = traced_stack["gateway"]
    gw_metrics = metrics_address(gateway)
    before = scrape(gw_metrics)
    traced_stack["query"].kill()
    provider = TracerProvider()
    with (
        EmbedClient(gateway.address) as client,
        provider.get_tracer("t").start_as_current_span("caller") as caller,
    ):
        result = client.embed([SECRET], "query")
    assert result.fallback and result.encoder == "document"
    after = scrape(gw_metrics)
    assert (
        value(after, "aegis_gateway_fallbacks_total")
        - value(before, "aegis_gateway_fallbacks_total")
        == 1
    )
    assert value(after, "aegis_gateway_replicas_healthy", pool="query") == 0
    trace_id = format(caller.get_span_context().trace_id, "032x")

    records = [json.loads(line) for line in gateway.lines if line.startswith("{")]
    fallback_logs = [r for r in records if "serving queries on the document pool" in r["msg"]]
    assert fallback_logs and fallback_logs[-1]["trace_id"] == trace_id
    assert len(fallback_logs[-1]["span_id"]) == 16

    def services_that_called_encode() -> set[str]:
        return {s.service for s in receiver.trace(trace_id) if s.name == f"{ENCODER}/Encode"}

    wanted = {"aegis-gateway", "aegis-encoder-document"}
    assert wait_until(lambda: wanted <= services_that_called_encode(), timeout=15)
    for name, proc in traced_stack.items():
        assert SECRET not in proc.output, f"{name} logged an input text"


def test_auth_refusals_are_counted(stack, student) -> None:
    """Calls the interceptor refuses never reach a handler; they still count, by status."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    # The pytest process has no provider of its own (servers install theirs at start);
    # the gateway's instruments were made on the API's proxy meter and follow this one.
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    def refused() -> dict[str, float]:
        data = reader.get_metrics_data()
        points = [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "aegis.gateway.requests"
            for p in m.data.data_points
        ]
        counts: dict[str, int] = {}  # summed over methods (one point per method and status)
        for p in points:
            if p.attributes["pool"] == "none":
                counts[p.attributes["status"]] = counts.get(p.attributes["status"], 0) + p.value
        return counts

    address = stack.encoder("q", student, "query")
    gw = stack.gateway([address], [address], auth_tokens=["good-token name=ci methods=GetInfo"])
    before = refused()
    for token in (None, "wrong-token", "good-token"):
        with (
            EmbedClient(f"127.0.0.1:{gw.port}", token=token) as client,
            pytest.raises(AegisError),
        ):
            client.embed(["hello"], "query")
    after = refused()
    for status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        moved = after.get(status, 0) - before.get(status, 0)
        assert moved == (2 if status == "UNAUTHENTICATED" else 1), (status, before, after)
