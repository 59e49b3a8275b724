"""A small OTLP/gRPC receiver (traces + metrics) that keeps what it gets in memory.

No collector or Jaeger installs here, and tests must assert on what really went over the
wire: this is a real OTLP endpoint built from `opentelemetry-proto`'s service
definitions. Used by the observability tests and by `aegis-lab bench telemetry` (the
exporters need somewhere to send to, or the overhead measured would be a lie).
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs: list[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, ids in lowercase hex."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]
    status_code: int
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass
class OtlpReceiver:
    """Start with `start()`; `spans` and `metric_names` fill as exporters send."""

    host: str = "127.0.0.1"
    port: int = 0
    keep: bool = True  # False: only count (benchmarks: a collector's cost is not ours)
    span_count: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    metric_points: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OtlpReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)
            self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- views
    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    @property
    def metric_names(self) -> set[str]:
        with self._lock:
            return {name for _, name, _ in self.metric_points}

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.metric_points.clear()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:
        if not self.sink.keep:
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self.sink._lock:
                self.sink.span_count += n
            return trace_service_pb2.ExportTraceServiceResponse()
        got = []
        for rs in request.resource_spans:
            service = str(_attrs(list(rs.resource.attributes)).get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            service=service,
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes=_attrs(list(s.attributes)),
                            links=tuple((ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links),
                            status_code=s.status.code,
                            events=tuple((e.name, _attrs(list(e.attributes))) for e in s.events),
                        )
                    )
        with self.sink._lock:
            self.sink.spans.extend(got)
            self.sink.span_count += len(got)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:
        got = []
        for rm in request.resource_metrics:
            service = str(_attrs(list(rm.resource.attributes)).get("service.name", ""))
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    points = getattr(m, kind).data_points if kind else []
                    for p in points:
                        got.append((service, m.name, _attrs(list(p.attributes))))
        with self.sink._lock:
            self.sink.metric_points.extend(got)
        return metrics_service_pb2.ExportMetricsServiceResponse()
