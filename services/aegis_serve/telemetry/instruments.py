"""Every metric aegis-serve records, created once per process from the global meter.

Names follow OpenTelemetry conventions (dots, units in UCUM); the Prometheus exporter turns
`aegis.gateway.request.duration` (s) into `aegis_gateway_request_duration_seconds_*` and
counters into `*_total`. Instruments are created against the API's proxy meter, so they
start recording as soon as `setup_telemetry` installs a provider (and cost almost nothing
when none is installed). Labels are bounded: method, pool, status code name, reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import cache

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

METER_NAME = "aegis_serve"

SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)

Gauge = Callable[[], Iterable[tuple[float, dict[str, str]]]]


class _GaugeSources:
    """Callbacks read at collection time (queue depth, healthy replicas), per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Gauge] = []

    def add(self, source: Gauge) -> Callable[[], None]:
        with self._lock:
            self._sources.append(source)

        def remove() -> None:
            with self._lock:
                if source in self._sources:
                    self._sources.remove(source)

        return remove

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            for value, attributes in source():
                yield Observation(value, attributes)


class RpcInstruments:
    """What every RPC boundary records (common/boundary.py): `aegis.<side>.requests` by
    method, pool and status, and `aegis.<side>.request.duration`."""

    def __init__(self, meter: metrics.Meter, side: str, where: str) -> None:
        self.requests = meter.create_counter(
            f"aegis.{side}.requests", "{request}", "RPCs handled, by method, pool and status"
        )
        self.duration = meter.create_histogram(
            f"aegis.{side}.request.duration", "s", f"RPC latency {where}",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip


class GatewayInstruments(RpcInstruments):
    """The gateway's metrics (labels: method, pool, status)."""

    def __init__(self, meter: metrics.Meter) -> None:
        super().__init__(meter, "gateway", "at the gateway")
        self.inputs = meter.create_counter(
            "aegis.gateway.inputs", "{text}", "texts embedded, by pool"
        )
        self.input_tokens = meter.create_counter(
            "aegis.gateway.input_tokens", "{token}", "input tokens embedded, by pool"
        )
        self.fallbacks = meter.create_counter(
            "aegis.gateway.fallbacks", "{request}", "query requests served by the document pool"
        )
        self.retries = meter.create_counter(
            "aegis.gateway.encoder.retries", "{call}",
            "Encode calls retried on another replica, by pool and the status that caused it",
        )  # fmt: skip
        self.replica_sources = _GaugeSources()
        meter.create_observable_gauge(
            "aegis.gateway.replicas.healthy", [self.replica_sources.observe], "{replica}",
            "healthy replicas per pool (configured replicas in aegis.gateway.replicas)",
        )  # fmt: skip
        self.configured_sources = _GaugeSources()
        meter.create_observable_gauge(
            "aegis.gateway.replicas", [self.configured_sources.observe], "{replica}",
            "configured replicas per pool",
        )  # fmt: skip


class EncoderInstruments(RpcInstruments):
    """An encoder replica's metrics (label `pool` = its role)."""

    def __init__(self, meter: metrics.Meter) -> None:
        super().__init__(meter, "encoder", "in the encoder")
        self.input_tokens = meter.create_counter(
            "aegis.encoder.input_tokens", "{token}", "tokens of texts accepted for encoding"
        )
        self.queue_wait = meter.create_histogram(
            "aegis.encoder.queue.wait", "s", "time a request's texts waited for a batch",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.batch_size = meter.create_histogram(
            "aegis.encoder.batch.size", "{text}", "texts per forward pass",
            explicit_bucket_boundaries_advisory=TEXT_BUCKETS,
        )  # fmt: skip
        self.batch_tokens = meter.create_histogram(
            "aegis.encoder.batch.tokens", "{token}", "real (unpadded) tokens per forward pass",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self.batch_padded_tokens = meter.create_histogram(
            "aegis.encoder.batch.padded_tokens", "{token}",
            "tokens the forward pass computed, padding included (packed: = real)",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self.batch_duration = meter.create_histogram(
            "aegis.encoder.batch.duration", "s", "forward pass time per batch",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.dropped_texts = meter.create_counter(
            "aegis.encoder.dropped_texts", "{text}",
            "texts dropped before the model (reason: expired | cancelled)",
        )  # fmt: skip
        self.failed_batches = meter.create_counter(
            "aegis.encoder.failed_batches", "{batch}", "forward passes that raised"
        )
        self.queue_sources = _GaugeSources()
        meter.create_observable_gauge(
            "aegis.encoder.queue.depth", [self.queue_sources.observe], "{text}",
            "texts waiting for a batch",
        )  # fmt: skip


@cache
def gateway_instruments() -> GatewayInstruments:
    return GatewayInstruments(metrics.get_meter(METER_NAME))


@cache
def encoder_instruments() -> EncoderInstruments:
    return EncoderInstruments(metrics.get_meter(METER_NAME))
