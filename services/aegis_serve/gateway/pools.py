"""Encoder pools as the gateway sees them: replicas, health, balancing and failover.

Each configured address is a gRPC target URI (`host:port`, `dns:///svc:port`,
`xds:///...`); each gets one persistent channel with round_robin over whatever the
resolver returns, so a headless Service balances per pod. On top, the pool round-robins
over healthy targets, re-probes them in the background, and retries an idempotent Encode
on the next target when one fails with a transport error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from aegis_serve.telemetry.instruments import gateway_instruments
from aegis_serve.telemetry.rpc import inject_metadata, recording, tracer

log = logging.getLogger(__name__)

ENCODER_SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name
# Failures worth trying elsewhere: the replica is gone, restarting, draining or full.
# A replica stopped mid-call ends its in-flight RPCs as CANCELLED; the caller's own cancel
# arrives here as asyncio.CancelledError instead, so CANCELLED from a replica is safe to retry.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": ENCODER_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 2,
                    "initialBackoff": "0.02s",
                    "maxBackoff": "0.2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def channel_options(max_message_bytes: int) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


class PoolUnavailable(Exception):
    """No replica of the pool could serve the call."""


@dataclass(eq=False)
class Replica:
    """One configured target of a pool."""

    target: str
    channel: grpc.aio.Channel
    stub: encoder_pb2_grpc.EncoderServiceStub
    health: health_pb2_grpc.HealthStub
    healthy: bool = False
    info: encoder_pb2.GetInfoResponse | None = None
    problem: str = "not probed yet"
    last_probe: float = 0.0


@dataclass(eq=False)
class Pool:
    """The replicas serving one role."""

    role: str
    replicas: list[Replica]
    probe_timeout_s: float = 2.0
    _rr: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def connect(
        cls,
        role: str,
        targets: Sequence[str],
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        extra_options: Sequence[tuple[str, object]] = (),
    ) -> Pool:
        replicas = []
        for target in targets:
            opts = channel_options(max_message_bytes) + list(extra_options)
            channel = (
                grpc.aio.secure_channel(target, credentials, options=opts)
                if credentials
                else grpc.aio.insecure_channel(target, options=opts)
            )
            replicas.append(
                Replica(
                    target=target,
                    channel=channel,
                    stub=encoder_pb2_grpc.EncoderServiceStub(channel),
                    health=health_pb2_grpc.HealthStub(channel),
                )
            )
        return cls(role=role, replicas=replicas)

    # -------------------------------------------------------------- health
    @property
    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas if r.healthy]

    @property
    def info(self) -> encoder_pb2.GetInfoResponse | None:
        """Info of a healthy replica (else of any replica that ever answered)."""
        for group in (self.healthy, self.replicas):
            for r in group:
                if r.info is not None:
                    return r.info
        return None

    async def probe(self, replica: Replica) -> None:
        """Health check + GetInfo; a replica is healthy only if both succeed."""
        try:
            status = await replica.health.Check(
                health_pb2.HealthCheckRequest(service=ENCODER_SERVICE), timeout=self.probe_timeout_s
            )
            if status.status != health_pb2.HealthCheckResponse.SERVING:
                raise PoolUnavailable("health check says NOT_SERVING")
            info = await replica.stub.GetInfo(
                encoder_pb2.GetInfoRequest(), timeout=self.probe_timeout_s
            )
        except (grpc.aio.AioRpcError, PoolUnavailable) as exc:
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            if replica.healthy:
                log.warning("%s replica %s unhealthy: %s", self.role, replica.target, detail)
            replica.healthy, replica.problem = False, detail or "unreachable"
        else:
            if not replica.healthy:
                log.info("%s replica %s healthy (%s)", self.role, replica.target, info.space_id)
            replica.info, replica.healthy, replica.problem = info, True, ""
        replica.last_probe = time.monotonic()

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(r) for r in self.replicas))

    def mark_down(self, replica: Replica, why: str) -> None:
        if replica.healthy:
            log.warning("%s replica %s failed: %s", self.role, replica.target, why)
        replica.healthy, replica.problem = False, why

    # ------------------------------------------------------------- calling
    def _order(self) -> list[Replica]:
        """Healthy replicas starting at the round-robin cursor, then the rest as a last resort."""
        healthy = self.healthy
        if healthy:
            start = next(self._rr) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
        return healthy + [r for r in self.replicas if not r.healthy]

    async def encode(
        self,
        request: encoder_pb2.EncodeRequest,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> tuple[encoder_pb2.EncodeResponse, Replica]:
        """Encode on one replica; on a transport failure, retry on the next within the deadline.

        Each attempt is a CLIENT span whose context travels in the call's metadata, so the
        encoder's spans hang under the attempt that reached it.
        """
        deadline = time.monotonic() + timeout
        last: grpc.aio.AioRpcError | None = None
        for attempt, replica in enumerate(self._order()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if last is not None:
                retry_labels = {"pool": self.role, "status": last.code().name}
                gateway_instruments().retries.add(1, retry_labels)
            with self._attempt_span(replica, attempt, len(request.texts)) as attempt_span:
                try:
                    resp = await replica.stub.Encode(
                        request, timeout=left, metadata=inject_metadata(metadata)
                    )
                    attempt_span.set_attribute("rpc.grpc.status_code", 0)
                    return resp, replica
                except grpc.aio.AioRpcError as exc:
                    attempt_span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                    attempt_span.set_status(Status(StatusCode.ERROR, exc.code().name))
                    if exc.code() not in RETRYABLE:
                        raise
                    last = exc
            assert last is not None
            if last.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                self.mark_down(replica, f"{last.code().name}: {last.details()}")
        if last is not None and last.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise last  # every replica is full: the caller should back off, not fail over
        if last is not None:
            raise PoolUnavailable(f"every replica failed, last: {last.details()}")
        raise PoolUnavailable("no replica answered before the deadline")

    def _attempt_span(
        self, replica: Replica, attempt: int, texts: int
    ) -> AbstractContextManager[Span]:
        """CLIENT span of one Encode attempt (skipped when the request is not sampled)."""
        if not recording():
            return nullcontext(trace.get_current_span())
        return tracer().start_as_current_span(
            f"{ENCODER_SERVICE}/Encode",
            kind=SpanKind.CLIENT,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "rpc.system": "grpc", "rpc.service": ENCODER_SERVICE, "rpc.method": "Encode",
                "server.address": replica.target, "aegis.pool": self.role,
                "aegis.attempt": attempt, "aegis.texts": texts,
            },
        )  # fmt: skip

    async def call(self, method: str, request: object, timeout: float) -> object:
        """A small unary call (Tokenize) on the first replica that answers."""
        last: Exception | None = None
        for replica in self._order():
            try:
                return await getattr(replica.stub, method)(
                    request, timeout=timeout, metadata=inject_metadata()
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                last = exc
                self.mark_down(replica, f"{exc.code().name}: {exc.details()}")
        raise PoolUnavailable(f"{self.role} pool: no replica answered ({last})")

    async def close(self) -> None:
        await asyncio.gather(*(r.channel.close() for r in self.replicas))
