"""Encoder telemetry: batch metrics and the batch span that links every request it served.

A forward pass serves texts of many requests (many traces). Its span
(`aegis.encoder.batch`) is a child of the first sampled request's Encode span and links
every sampled request span it served; each request's Encode span, in turn, gets a `batch`
event naming the batch span. Batches serving no sampled request get no span at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import trace

from aegis_serve.encoder.batching import Batcher, BatchRecord, Job
from aegis_serve.telemetry.instruments import EncoderInstruments, encoder_instruments
from aegis_serve.telemetry.rpc import record_span, tracer


class EncoderObserver:
    """BatchObserver for one replica: metrics with `pool=<role>`, batch spans."""

    def __init__(self, role: str, instruments: EncoderInstruments | None = None) -> None:
        self.role = role
        self.labels = {"pool": role}
        self.instruments = i = instruments or encoder_instruments()
        # Label sets bound once: a record is then a bucket update (instruments.py).
        self._input_tokens = i.input_tokens.bind(self.labels)
        self._queue_wait = i.queue_wait.bind(self.labels)
        self._batch = tuple(
            h.bind(self.labels)
            for h in (i.batch_size, i.batch_tokens, i.batch_padded_tokens, i.batch_duration)
        )
        self._remove_gauge = None

    def watch_queue(self, batcher: Batcher) -> None:
        """Report the batcher's queue depth as `aegis.encoder.queue.depth`."""

        def depth() -> Iterable[tuple[float, dict[str, str]]]:
            yield float(batcher.queued_texts), self.labels

        self._remove_gauge = self.instruments.queue_sources.add(depth)

    def close(self) -> None:
        if self._remove_gauge is not None:
            self._remove_gauge()
            self._remove_gauge = None

    def on_batch(self, record: BatchRecord) -> None:
        seconds = (record.end_wall_ns - record.start_wall_ns) / 1e9
        if record.failed:
            self.instruments.failed_batches.add(1, self.labels)
        else:
            size, tokens, padded, duration = self._batch
            size.record(record.texts)
            tokens.record(record.real_tokens)
            padded.record(record.padded_tokens)
            duration.record(seconds)
        sampled = [
            job.tag
            for job in record.jobs
            if isinstance(job.tag, trace.SpanContext) and job.tag.trace_flags.sampled
        ]
        if not sampled:  # nobody will look for this batch: skip the span (hot path)
            return
        # A child of the first sampled request's Encode span (so the head sampler keeps it
        # and that trace shows the forward pass), linked to every sampled request it served.
        parent = trace.set_span_in_context(trace.NonRecordingSpan(sampled[0]))
        batch = tracer().start_span(
            "aegis.encoder.batch",
            context=parent,
            links=[trace.Link(ctx) for ctx in sampled],
            start_time=record.start_wall_ns,
            attributes={
                "aegis.pool": self.role,
                "aegis.batch.texts": record.texts,
                "aegis.batch.requests": len(record.jobs),
                "aegis.batch.tokens": record.real_tokens,
                "aegis.batch.padded_tokens": record.padded_tokens,
                "aegis.layers": record.layers,
            },
        )
        if record.failed:
            batch.set_status(trace.Status(trace.StatusCode.ERROR, "forward pass failed"))
        batch.end(end_time=record.end_wall_ns)
        ctx = batch.get_span_context()
        for job in record.jobs:
            job.batch_tags.append((ctx, record.start_wall_ns, record.end_wall_ns, record.texts))

    def on_drop(self, texts: int, reason: str) -> None:
        self.instruments.dropped_texts.add(texts, {**self.labels, "reason": reason})

    def on_done(self, job: Job, input_tokens: int) -> None:
        """Per request, in its own trace: a `queue` span (enqueue → batch start) and one
        `batch` event per forward pass that served it, naming that batch's span (events
        ride on the Encode span: a span each would cost more than the ≤ 5% budget)."""
        self._input_tokens.add(input_tokens)
        self._queue_wait.record(job.queue_ns / 1e9)
        current = trace.get_current_span()
        if not current.is_recording():  # unsampled: no queue span, no events (hot path)
            return
        record_span("queue", job.enqueued_wall_ns, job.enqueued_wall_ns + job.queue_ns,
                    **{"aegis.texts": len(job.items)})  # fmt: skip
        for ctx, start, end, texts in job.batch_tags:
            current.add_event(
                "batch",
                {
                    "aegis.batch.span_id": format(ctx.span_id, "016x"),
                    "aegis.batch.trace_id": format(ctx.trace_id, "032x"),
                    "aegis.batch.texts": texts,
                    "aegis.batch.ms": (end - start) / 1e6,
                },
                timestamp=start,
            )
