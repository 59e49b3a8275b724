"""Every metric aegis-serve records, created once per process from the global meter.

Names follow OpenTelemetry conventions (dots, units in UCUM); the Prometheus exporter turns
`aegis.gateway.request.duration` (s) into `aegis_gateway_request_duration_seconds_*` and
counters into `*_total`. Instruments are created against the API's proxy meter, so they
start recording as soon as `setup_telemetry` installs a provider (and cost almost nothing
when none is installed). Labels are bounded: method, pool, status code name, reason.

Counters and histograms aggregate here, per label set bound once (`LocalCounter`,
`LocalHistogram`): the SDK's synchronous `Counter.add` / `Histogram.record` cost ≈ 75,000
instructions per call (a measurement object, label cleaning and hashing, an exemplar check,
two locks), a dozen times per request; a bound cell costs a few thousand. Counters reach the
SDK as observable counters (what a counter exports). The SDK has no asynchronous histogram:
histograms record through the SDK unless `setup_telemetry` serves /metrics alone, in which
case its Prometheus reader (`prometheus_reader`) adds their points to every collection, the
very data model objects the SDK's own histogram aggregation would have produced.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

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


class CounterCell:
    """The running total of one label set of a `LocalCounter` (bind once, add often)."""

    __slots__ = ("_lock", "attributes", "value")

    def __init__(self, lock: threading.Lock, attributes: dict[str, str]) -> None:
        self._lock = lock
        self.attributes = attributes
        self.value: float = 0

    def add(self, amount: float) -> None:
        if 0 <= amount < math.inf:  # what the SDK's Counter keeps too (it drops the rest)
            with self._lock:
                self.value += amount


_NO_LABELS: frozenset[tuple[str, str]] = frozenset()
_Cell = TypeVar("_Cell")


def _bound_cell(
    cells: dict[frozenset[tuple[str, str]], _Cell],
    lock: threading.Lock,
    attributes: Mapping[str, str] | None,
    make: Callable[[dict[str, str]], _Cell],
) -> _Cell:
    """The cell of one label set in `cells`, made (under `lock`) on first use."""
    key = frozenset(attributes.items()) if attributes else _NO_LABELS
    cell = cells.get(key)
    if cell is None:
        with lock:
            cell = cells.setdefault(key, make(dict(attributes or {})))
    return cell


class LocalCounter:
    """A monotonic counter summed in this process and exported as an `ObservableCounter` of
    the same name, unit and description, i.e. what a synchronous counter exports (one
    cumulative monotonic sum per label set; `*_total` on /metrics; OTLP `Sum`). A bound add
    is an addition under a lock instead of the SDK's measurement pipeline (≈ 3,000 vs
    ≈ 75,000 instructions). Counters record no exemplars (SDK-recorded histograms still do)."""

    def __init__(self, meter: metrics.Meter, name: str, unit: str, description: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._cells: dict[frozenset[tuple[str, str]], CounterCell] = {}
        meter.create_observable_counter(name, [self._observe], unit, description)

    def bind(self, attributes: Mapping[str, str] | None = None) -> CounterCell:
        """The cell of one label set (created on first use; keep it on a hot path)."""
        return _bound_cell(self._cells, self._lock, attributes,
                           lambda labels: CounterCell(self._lock, labels))  # fmt: skip

    def add(self, amount: float, attributes: Mapping[str, str] | None = None) -> None:
        """As the API's `Counter.add`."""
        self.bind(attributes).add(amount)

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            points = [(cell.value, cell.attributes) for cell in self._cells.values()]
        return [Observation(value, attributes) for value, attributes in points]


class HistogramCell:
    """One label set of a `LocalHistogram` (bind once, record often)."""

    __slots__ = ("_owner", "attributes", "count", "counts", "max", "min", "start_ns", "sum")

    def __init__(self, owner: LocalHistogram, attributes: dict[str, str]) -> None:
        self._owner = owner
        self.attributes = attributes
        self.counts = [0] * (len(owner.boundaries) + 1)
        self.count = 0
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        self.start_ns = time.time_ns()

    def record(self, value: float) -> None:
        owner = self._owner
        if not owner.local:
            owner.sdk.record(value, self.attributes)
        elif 0 <= value < math.inf:  # what the SDK's histogram keeps (it drops the rest)
            i = bisect_left(owner.boundaries, value)  # the SDK's bucket rule: upper bound ≥ value
            with owner.lock:
                self.counts[i] += 1
                self.count += 1
                self.sum += value
                if value < self.min:
                    self.min = value
                if value > self.max:
                    self.max = value


_HISTOGRAMS: weakref.WeakSet[LocalHistogram] = weakref.WeakSet()
_LOCAL_HISTOGRAMS = False


class LocalHistogram:
    """An explicit-bucket histogram with bound label sets. Records go to the SDK's histogram
    of the same name, unit, description and buckets, or, once `local_histograms(True)` (set
    by `setup_telemetry` when /metrics is the only metric reader), into the cells: cumulative
    bucket counts, sum, count, min and max per label set, which `with_local_histograms` turns
    into the SDK's `Histogram` data points at collection (≈ 5,000 instead of ≈ 79,000
    instructions a record; no exemplars, which the Prometheus exporter drops anyway)."""

    def __init__(
        self, meter: metrics.Meter, name: str, unit: str, description: str,
        boundaries: Sequence[float],
    ) -> None:  # fmt: skip
        self.name, self.unit, self.description = name, unit, description
        self.boundaries = tuple(boundaries)
        self.sdk = meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=boundaries
        )
        self.local = _LOCAL_HISTOGRAMS
        self.lock = threading.Lock()
        self._cells: dict[frozenset[tuple[str, str]], HistogramCell] = {}
        _HISTOGRAMS.add(self)

    def bind(self, attributes: Mapping[str, str] | None = None) -> HistogramCell:
        """The cell of one label set (created on first use; keep it on a hot path)."""
        return _bound_cell(self._cells, self.lock, attributes,
                           lambda labels: HistogramCell(self, labels))  # fmt: skip

    def record(self, value: float, attributes: Mapping[str, str] | None = None) -> None:
        """As the API's `Histogram.record`."""
        self.bind(attributes).record(value)

    def metric(self, now_ns: int) -> Any:
        """The SDK's `Metric` of the cells recorded so far (cumulative), or None."""
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
        )

        with self.lock:
            cells = [
                (dict(c.attributes), c.start_ns, c.count, c.sum, tuple(c.counts), c.min, c.max)
                for c in self._cells.values()
                if c.count
            ]
        if not cells:
            return None
        points = [
            HistogramDataPoint(
                attributes=attributes, start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                count=count, sum=total, bucket_counts=counts, explicit_bounds=self.boundaries,
                min=low, max=high,
            )
            for attributes, start_ns, count, total, counts, low, high in cells
        ]  # fmt: skip
        data = Histogram(points, AggregationTemporality.CUMULATIVE)
        return Metric(self.name, self.description, self.unit, data)


def local_histograms(enabled: bool) -> None:
    """Aggregate every histogram of this process here (True) or in the SDK (False): set once,
    before the first record, by whoever installs a reader that adds them
    (`prometheus_reader`)."""
    global _LOCAL_HISTOGRAMS
    _LOCAL_HISTOGRAMS = enabled
    for histogram in list(_HISTOGRAMS):
        histogram.local = enabled


def with_local_histograms(
    data: Any, resource: Any, histograms: Iterable[LocalHistogram] | None = None
) -> Any:
    """`data` (the SDK's `MetricsData` of one collection, or None) with the points of the
    locally aggregated `histograms` (default: all of this process) in the `aegis_serve`
    scope, replacing any SDK metric of the same name (there is none once recording went
    local)."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now = time.time_ns()
    chosen = list(_HISTOGRAMS if histograms is None else histograms)
    local = [m for h in chosen if h.local for m in [h.metric(now)] if m is not None]
    if not local:
        return data
    if data is None or not data.resource_metrics:
        head, rest = ResourceMetrics(resource, [], resource.schema_url), []
    else:
        head, *rest = data.resource_metrics
    names = {m.name for m in local}
    scopes, placed = [], False
    for sm in head.scope_metrics:
        kept = [m for m in sm.metrics if m.name not in names]
        if sm.scope.name == METER_NAME and not placed:
            kept, placed = kept + local, True
        scopes.append(ScopeMetrics(sm.scope, kept, sm.schema_url))
    if not placed:
        scopes.append(ScopeMetrics(InstrumentationScope(METER_NAME), local, ""))
    return MetricsData([ResourceMetrics(head.resource, scopes, head.schema_url), *rest])


def prometheus_reader(
    resource: Any, histograms: Iterable[LocalHistogram] | None = None, **options: Any
) -> Any:
    """The OpenTelemetry Prometheus reader (`options` are its own), plus the locally aggregated
    `histograms` (default: all of this process)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    class Reader(PrometheusMetricReader):
        _state = threading.local()

        def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000,
                             **kwargs: Any) -> None:  # fmt: skip
            self._state.received = True
            data = with_local_histograms(metrics_data, resource, histograms)
            super()._receive_metrics(data, timeout_millis, **kwargs)

        def collect(self, timeout_millis: float = 10_000) -> None:
            self._state.received = False
            super().collect(timeout_millis)
            if not self._state.received:  # the SDK had nothing; the histograms may have points
                self._receive_metrics(None, timeout_millis)

    return Reader(**options)


class RpcInstruments:
    """What every RPC boundary records (common/boundary.py): `aegis.<side>.requests` by
    method, pool and status, and `aegis.<side>.request.duration`."""

    def __init__(self, meter: metrics.Meter, side: str, where: str) -> None:
        self.requests = LocalCounter(
            meter, f"aegis.{side}.requests", "{request}", "RPCs handled, by method, pool and status"
        )
        self.duration = LocalHistogram(
            meter, f"aegis.{side}.request.duration", "s", f"RPC latency {where}", SECONDS_BUCKETS
        )
        self._bound: dict[tuple[str, str, str], tuple[CounterCell, HistogramCell]] = {}

    def record(self, method: str, pool: str, status: str, seconds: float) -> None:
        """One finished RPC: +1 request and its latency, under labels bound once per set."""
        key = (method, pool, status)
        bound = self._bound.get(key)
        if bound is None:
            labels = {"method": method, "pool": pool, "status": status}
            bound = (self.requests.bind(labels), self.duration.bind(labels))
            bound = self._bound.setdefault(key, bound)
        bound[0].add(1)
        bound[1].record(seconds)


class GatewayInstruments(RpcInstruments):
    """The gateway's metrics (labels: method, pool, status)."""

    def __init__(self, meter: metrics.Meter) -> None:
        super().__init__(meter, "gateway", "at the gateway")
        self.inputs = LocalCounter(
            meter, "aegis.gateway.inputs", "{text}", "texts embedded, by pool"
        )
        self.input_tokens = LocalCounter(
            meter, "aegis.gateway.input_tokens", "{token}", "input tokens embedded, by pool"
        )
        self.fallbacks = LocalCounter(
            meter, "aegis.gateway.fallbacks", "{request}",
            "query requests served by the document pool",
        )  # fmt: skip
        self.retries = LocalCounter(
            meter, "aegis.gateway.encoder.retries", "{call}",
            "Encode calls retried on another replica, by pool and the status that caused it",
        )  # fmt: skip
        self.canary_checks = LocalCounter(
            meter, "aegis.gateway.canary.checks", "{check}",
            "canary checks of replicas, by pool and result (pass, fail, skip: no canaries, "
            "error: could not run)",
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
        self.input_tokens = LocalCounter(
            meter, "aegis.encoder.input_tokens", "{token}", "tokens of texts accepted for encoding"
        )
        self.queue_wait = LocalHistogram(
            meter, "aegis.encoder.queue.wait", "s", "time a request's texts waited for a batch",
            SECONDS_BUCKETS,
        )  # fmt: skip
        self.batch_size = LocalHistogram(
            meter, "aegis.encoder.batch.size", "{text}", "texts per forward pass", TEXT_BUCKETS
        )
        self.batch_tokens = LocalHistogram(
            meter, "aegis.encoder.batch.tokens", "{token}",
            "real (unpadded) tokens per forward pass", TOKEN_BUCKETS,
        )  # fmt: skip
        self.batch_padded_tokens = LocalHistogram(
            meter, "aegis.encoder.batch.padded_tokens", "{token}",
            "tokens the forward pass computed, padding included (packed: = real)", TOKEN_BUCKETS,
        )  # fmt: skip
        self.batch_duration = LocalHistogram(
            meter, "aegis.encoder.batch.duration", "s", "forward pass time per batch",
            SECONDS_BUCKETS,
        )  # fmt: skip
        self.dropped_texts = LocalCounter(
            meter, "aegis.encoder.dropped_texts", "{text}",
            "texts dropped before the model (reason: expired | cancelled)",
        )  # fmt: skip
        self.failed_batches = LocalCounter(
            meter, "aegis.encoder.failed_batches", "{batch}", "forward passes that raised"
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
