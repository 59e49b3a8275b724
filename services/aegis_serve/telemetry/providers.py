"""Install the OpenTelemetry SDK for one process, configured the standard way.

Traces go to OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is
set. Metrics go to a Prometheus `/metrics` endpoint when a port is given, else to OTLP the
same way as traces; `OTEL_METRICS_EXPORTER=otlp` asks for OTLP as well as /metrics.
Everything else (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`,
`OTEL_EXPORTER_OTLP_HEADERS`, `..._INSECURE`, `..._CERTIFICATE`) is read by the SDK
itself. With neither an endpoint nor a port, no provider is installed: the API's no-op
tracer and meter cost next to nothing and trace context still passes through.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from aegis_serve.telemetry.instruments import local_histograms, prometheus_reader

log = logging.getLogger(__name__)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _disabled(signal: str) -> bool:
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return True
    return _env(f"OTEL_{signal}_EXPORTER").lower() == "none"


def _otlp_metrics_wanted(metrics_port: int) -> bool:
    """OTLP metrics unless disabled, or unless /metrics serves them and OTLP was not asked
    for by name: both at once double every measurement's cost and, in one backend, every
    series (OTEL_METRICS_EXPORTER=otlp turns both on)."""
    if _disabled("METRICS"):
        return False
    asked = "otlp" in _env("OTEL_METRICS_EXPORTER").lower().split(",")
    return asked or not metrics_port


def traces_endpoint() -> str:
    return _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")


def metrics_endpoint() -> str:
    return _env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass
class Telemetry:
    """What was installed in this process, and how to flush it on shutdown."""

    service_name: str
    traces_to: str = ""
    metrics_to: str = ""
    metrics_address: str = ""
    _shutdown: list[Callable[[], object]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"service={self.service_name} {self.short}"

    @property
    def short(self) -> str:
        """What is exported where, for the start line."""
        parts = [f"traces={self.traces_to or 'off'}"]
        parts.append(f"otlp_metrics={self.metrics_to or 'off'}")
        parts.append(f"prometheus={self.metrics_address or 'off'}")
        return " ".join(parts)

    def shutdown(self) -> None:
        """Flush pending spans and metric points (called after the gRPC server drained)."""
        for fn in reversed(self._shutdown):
            try:
                fn()
            except Exception:  # exporting must never block a clean exit
                log.warning("telemetry shutdown step failed", exc_info=True)
        self._shutdown.clear()


def _resource(default_name: str, attributes: dict[str, str]):
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    class HashedResource(Resource):
        """A resource that computes its hash once. The OTLP exporters group every span (and
        metric) they encode by resource, and `Resource.__hash__` serializes all attributes
        to JSON each time: ≈ 15% of the cost of encoding a span. The attributes of a
        resource are immutable, so the hash never changes."""

        def __init__(self, resource: Resource) -> None:
            super().__init__(resource.attributes, resource.schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    attrs: dict[str, str] = {"service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
    attrs.update(attributes)
    if not _env("OTEL_SERVICE_NAME") and "service.name=" not in _env("OTEL_RESOURCE_ATTRIBUTES"):
        attrs[SERVICE_NAME] = default_name  # OTEL_SERVICE_NAME, when set, wins
    return HashedResource(Resource.create(attrs))


def setup_telemetry(
    default_service_name: str,
    *,
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 0,
    attributes: dict[str, str] | None = None,
) -> Telemetry:
    """Install tracer and meter providers for this process (call once, at start)."""
    protocol = _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol != "grpc":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: aegis-serve exports OTLP/gRPC only", protocol)
    resource = _resource(default_service_name, attributes or {})
    tele = Telemetry(str(resource.attributes.get("service.name", default_service_name)))
    endpoint = traces_endpoint()
    if endpoint and not _disabled("TRACES"):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        tele.traces_to = endpoint
        tele._shutdown.append(provider.shutdown)
    readers = []
    endpoint = metrics_endpoint()
    if endpoint and _otlp_metrics_wanted(metrics_port):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        tele.metrics_to = endpoint
    if metrics_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        if readers:  # OTLP as well: histograms through the SDK (exemplars, temporality)
            readers.append(PrometheusMetricReader())
        else:  # /metrics alone: histograms aggregated by aegis-serve, added at collection
            local_histograms(True)
            readers.append(prometheus_reader(resource))
        server, _ = start_http_server(metrics_port, addr=metrics_host)
        tele.metrics_address = f"{metrics_host}:{server.server_port}"
        tele._shutdown.append(server.shutdown)
    if readers:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider

        # Exemplars reach OTLP only (the Prometheus exporter drops them): with /metrics alone,
        # sampling them is work thrown away on every measurement (OTEL_METRICS_EXEMPLAR_FILTER
        # still decides when set).
        no_exemplars = not tele.metrics_to and not _env("OTEL_METRICS_EXEMPLAR_FILTER")
        meter_provider = MeterProvider(
            metric_readers=readers,
            resource=resource,
            exemplar_filter=AlwaysOffExemplarFilter() if no_exemplars else None,
        )
        metrics.set_meter_provider(meter_provider)
        tele._shutdown.append(meter_provider.shutdown)
    log.debug("telemetry: %s", tele.summary)  # the process's start line says it once
    return tele
