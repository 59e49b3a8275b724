"""Bounded admission at the gateway: in-flight requests, in-flight inputs, open streams.

Load beyond the bounds is answered at once with RESOURCE_EXHAUSTED and the standard
`grpc-retry-pushback-ms` trailer (clients back off; gRPC retry policies wait that long)
instead of queueing in gateway memory. The encoders' own bounded
queues then protect the model; these bounds protect the gateway itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from aegis_serve.common.errors import ServiceError
from aegis_serve.protocol import RETRY_AFTER_MS, retry_after


def exhausted(message: str, retry_after_ms: int = RETRY_AFTER_MS) -> ServiceError:
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after(retry_after_ms))


class Admission:
    """Counters checked and bumped on the event loop (no lock needed: no await inside)."""

    def __init__(self, max_requests: int, max_inputs: int, max_streams: int) -> None:
        self.max_requests = max_requests
        self.max_inputs = max_inputs
        self.max_streams = max_streams
        self.requests = 0
        self.inputs = 0
        self.streams = 0

    @contextlib.contextmanager
    def request(self, inputs: int) -> Iterator[None]:
        """Hold one request slot and `inputs` input slots for the block."""
        if self.requests + 1 > self.max_requests:
            raise exhausted(
                f"gateway is at its limit of {self.max_requests} requests in flight; "
                "retry with backoff"
            )
        if self.inputs and self.inputs + inputs > self.max_inputs:
            raise exhausted(
                f"gateway is at its limit of {self.max_inputs} inputs in flight "
                f"({self.inputs} now, this request adds {inputs}); retry with backoff"
            )
        self.requests += 1
        self.inputs += inputs
        try:
            yield
        finally:
            self.requests -= 1
            self.inputs -= inputs

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """Hold one EmbedStream slot for the life of the stream."""
        if self.streams + 1 > self.max_streams:
            raise exhausted(
                f"gateway has {self.streams} EmbedStream calls open, the limit is "
                f"{self.max_streams}; retry with backoff or reuse an open stream"
            )
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1
