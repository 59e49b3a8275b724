"""Encoder pools as the gateway sees them: replicas, health, balancing and failover.

A pool holds replicas of two kinds behind one interface (`Replica`: `check`, `encode`,
`tokenize`, `close`). A `RemoteReplica` is a configured gRPC target URI (`host:port`,
`dns:///svc:port`, `xds:///...`) with one persistent channel and round_robin over whatever
the resolver returns, so a headless Service balances per pod. An embedded replica
(gateway/embedded.py, target `embedded`) runs the encoder core inside the gateway process: no
network hop and no serialization of the float matrix. On top, the pool round-robins over
healthy replicas, re-probes them in the background, and retries an idempotent Encode on the
next replica when one fails with a transport error or a full queue.

Whatever a replica refuses comes out as a `ServiceError` carrying the replica's status (and
its back-off trailer), so routing, fallback and error mapping do not care which kind answered.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from aegis_serve.common.errors import ServiceError
from aegis_serve.encoder.result import Encoded, MalformedResponse
from aegis_serve.gateway.coalesce import Coalescer
from aegis_serve.protocol import BACKOFF_TRAILERS
from aegis_serve.telemetry.instruments import gateway_instruments
from aegis_serve.telemetry.rpc import inject_metadata, tracer

log = logging.getLogger(__name__)

ENCODER_SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name
# Probes a replica must fail in a row before its in-flight calls are ended and retried
# elsewhere (one failure already takes it out of rotation for new calls): two, so a replica
# slow to answer one probe under load does not lose its work.
EJECT_AFTER_FAILED_PROBES = 2
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


class ReplicaDown(Exception):
    """A health probe's verdict: the replica cannot serve now (the message says why)."""


def upstream_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    """A remote replica's status as a ServiceError, with its back-off trailer (if any)."""
    trailers = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if k in BACKOFF_TRAILERS)
    return ServiceError(exc.code(), exc.details() or exc.code().name, trailers)


class Replica:
    """One member of a pool: a remote encoder (RemoteReplica) or an in-process one
    (gateway/embedded.py). The pool keeps its health state here."""

    kind = "replica"

    def __init__(self, target: str) -> None:
        self.target = target
        self.healthy = False
        self.info: encoder_pb2.GetInfoResponse | None = None
        self.problem = "not probed yet"
        self.last_probe = 0.0
        # Canary checks (gateway/canary.py): the verdict and what it was about.
        self.verified = False
        self.refused = ""
        self.checked_at = 0.0
        self.checked_identity: tuple[str, str, int, str] | None = None
        self.checked_with_reference = False
        # Consecutive failed probes (a hung replica fails them by timing out).
        self.failed_probes = 0

    async def check(self, timeout: float) -> encoder_pb2.GetInfoResponse:
        """The replica's info if it can serve; raises ReplicaDown otherwise."""
        raise NotImplementedError

    async def encode(
        self,
        request: encoder_pb2.EncodeRequest,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> Encoded:
        """Embed one request; raises ServiceError with the replica's status."""
        raise NotImplementedError

    async def tokenize(
        self, request: encoder_pb2.TokenizeRequest, timeout: float
    ) -> encoder_pb2.TokenizeResponse:
        """Tokens of each text; raises ServiceError with the replica's status."""
        raise NotImplementedError

    def eject_calls(self, why: str) -> int:
        """End the calls in flight on this replica so their requests are tried elsewhere (a
        hung replica would hold them until their deadline); returns how many were ended."""
        return 0

    async def close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, healthy={self.healthy})"


class RemoteReplica(Replica):
    """A configured gRPC target: one channel (round_robin over what its resolver returns)."""

    kind = "remote"

    def __init__(
        self,
        target: str,
        channel: grpc.aio.Channel,
        options: Sequence[tuple[str, object]] = (),
        coalesce_calls: int = 0,
        coalesce_texts: int = 64,
    ) -> None:
        super().__init__(target)
        self.options = list(options)
        self._use(channel)
        self._calls: set[grpc.aio.Call] = set()
        self._ejected: dict[grpc.aio.Call, str] = {}
        self.coalescer = Coalescer(self._encode_call, coalesce_calls, coalesce_texts)

    def _use(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def reconnect(self, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
        """New calls go over a new TLS channel made with `credentials`; returns the old
        channel, whose calls in flight the caller lets finish before closing it."""
        old = self.channel
        self._use(grpc.aio.secure_channel(self.target, credentials, options=self.options))
        return old

    async def check(self, timeout: float) -> encoder_pb2.GetInfoResponse:
        """Health check + GetInfo; healthy only if both succeed."""
        try:
            status = await self.health.Check(
                health_pb2.HealthCheckRequest(service=ENCODER_SERVICE), timeout=timeout
            )
            if status.status != health_pb2.HealthCheckResponse.SERVING:
                raise ReplicaDown("health check says NOT_SERVING")
            return await self.stub.GetInfo(encoder_pb2.GetInfoRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise ReplicaDown(exc.details() or "unreachable") from None

    async def encode(
        self,
        request: encoder_pb2.EncodeRequest,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> Encoded:
        return await self.coalescer.encode(request, timeout, metadata)

    async def _encode_call(
        self,
        request: encoder_pb2.EncodeRequest,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> Encoded:
        """One Encode RPC (the coalescer's way out)."""
        call = self.stub.Encode(request, timeout=timeout, metadata=metadata)
        self._calls.add(call)
        try:
            resp = await call
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc) from None
        except asyncio.CancelledError:
            why = self._ejected.pop(call, None)
            if why is None:  # the caller's own cancellation
                raise
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, why) from None
        finally:
            self._calls.discard(call)
            self._ejected.pop(call, None)
        try:
            return Encoded.from_response(resp)
        except MalformedResponse as exc:
            raise ServiceError(
                grpc.StatusCode.INTERNAL, f"encoder returned a malformed matrix: {exc}"
            ) from None

    async def tokenize(
        self, request: encoder_pb2.TokenizeRequest, timeout: float
    ) -> encoder_pb2.TokenizeResponse:
        try:
            return await self.stub.Tokenize(request, timeout=timeout, metadata=inject_metadata())
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc) from None

    def eject_calls(self, why: str) -> int:
        calls = list(self._calls)
        for call in calls:
            self._ejected[call] = why
            call.cancel()
        # Requests waiting to share a call would otherwise go to this replica next.
        waiting = self.coalescer.fail_waiting(ServiceError(grpc.StatusCode.UNAVAILABLE, why))
        return len(calls) + waiting

    async def close(self) -> None:
        await self.coalescer.close()
        await self.channel.close()


@dataclass(eq=False)
class Pool:
    """The replicas serving one role."""

    role: str
    replicas: list[Replica]
    probe_timeout_s: float = 2.0
    # (replica, its info, was it healthy) -> why to keep it out of rotation for now ('' = no
    # reason): the canary guard's hold on joining and refused replicas.
    hold: Callable[[Replica, encoder_pb2.GetInfoResponse, bool], str] | None = None
    _rr: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def connect(
        cls,
        role: str,
        targets: Sequence[str],
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        extra_options: Sequence[tuple[str, object]] = (),
        coalesce_calls: int = 0,
        coalesce_texts: int = 64,
    ) -> Pool:
        """A pool of remote replicas, one channel per target (in-process ones are added by
        the caller: see gateway/server.py)."""
        replicas: list[Replica] = []
        for target in targets:
            opts = channel_options(max_message_bytes) + list(extra_options)
            channel = (
                grpc.aio.secure_channel(target, credentials, options=opts)
                if credentials
                else grpc.aio.insecure_channel(target, options=opts)
            )
            replicas.append(RemoteReplica(target, channel, opts, coalesce_calls, coalesce_texts))
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
        """Ask the replica whether it can serve (health + info); update its state."""
        try:
            info = await replica.check(self.probe_timeout_s)
        except ReplicaDown as exc:
            detail = str(exc) or "unreachable"
            if replica.healthy:
                log.warning("%s replica %s unhealthy: %s", self.role, replica.target, detail)
            replica.healthy, replica.problem = False, detail
            replica.failed_probes += 1
            if replica.failed_probes == EJECT_AFTER_FAILED_PROBES:
                # Alive but not answering (e.g. stopped, or wedged): what it holds would wait
                # for its deadline; Encode is idempotent, so retry it on the other replicas.
                ended = replica.eject_calls(
                    f"replica {replica.target} stopped answering ({detail}); ejected"
                )
                if ended:
                    log.warning("%s replica %s ejected: %d calls and waiting requests sent "
                                "elsewhere", self.role, replica.target, ended)  # fmt: skip
        else:
            replica.failed_probes = 0
            held = self.hold(replica, info, replica.healthy) if self.hold else ""
            if held:
                replica.info, replica.healthy, replica.problem = info, False, held
                replica.last_probe = time.monotonic()
                return
            if not replica.healthy:  # the first probe is in the gateway's start line
                first = replica.last_probe == 0.0
                log.log(logging.DEBUG if first else logging.INFO, "%s replica %s healthy (%s)",
                        self.role, replica.target, info.space_id)  # fmt: skip
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
    ) -> tuple[Encoded, Replica]:
        """Encode on one replica; on a transport failure or a full queue, retry on the next
        within the deadline. Raises ServiceError (a replica's status) or PoolUnavailable.

        Each attempt is a span (CLIENT for a remote replica, whose context travels in the
        call's metadata so the encoder's spans hang under the attempt that reached it;
        INTERNAL for the embedded one, whose spans are children of it in-process)."""
        deadline = time.monotonic() + timeout
        last: ServiceError | None = None
        for attempt, replica in enumerate(self._order()):
            left = deadline - time.monotonic()
            if left <= 0:
                if last is None:  # the caller's deadline, not the replicas, ended the call
                    raise ServiceError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the call's deadline expired before a {self.role} replica was tried",
                    )
                break
            if last is not None:
                retry_labels = {"pool": self.role, "status": last.code.name}
                gateway_instruments().retries.add(1, retry_labels)
            with self._attempt_span(replica, attempt, len(request.texts)) as attempt_span:
                try:
                    resp = await replica.encode(request, left, inject_metadata(metadata))
                    attempt_span.set_attribute("rpc.grpc.status_code", 0)
                    return resp, replica
                except ServiceError as exc:
                    attempt_span.set_attribute("rpc.grpc.status_code", exc.code.value[0])
                    attempt_span.set_status(Status(StatusCode.ERROR, exc.code.name))
                    if exc.code not in RETRYABLE:
                        raise
                    last = exc
            assert last is not None
            if last.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                self.mark_down(replica, f"{last.code.name}: {last.message}")
        if last is not None and last.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise last  # every replica is full: the caller should back off, not fail over
        if last is not None:
            raise PoolUnavailable(f"every replica failed, last: {last.message}")
        raise PoolUnavailable("no replica answered before the deadline")

    def _attempt_span(
        self, replica: Replica, attempt: int, texts: int
    ) -> AbstractContextManager[Span]:
        """The span of one Encode attempt (skipped when the request is not sampled)."""
        current = trace.get_current_span()
        if not current.is_recording():
            return nullcontext(current)
        remote = isinstance(replica, RemoteReplica)
        return tracer().start_as_current_span(
            f"{ENCODER_SERVICE}/Encode" if remote else "embedded Encode",
            kind=SpanKind.CLIENT if remote else SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "rpc.system": "grpc", "rpc.service": ENCODER_SERVICE, "rpc.method": "Encode",
                "server.address": replica.target, "aegis.pool": self.role,
                "aegis.replica.kind": replica.kind, "aegis.attempt": attempt,
                "aegis.texts": texts,
            },
        )  # fmt: skip

    async def tokenize(
        self, request: encoder_pb2.TokenizeRequest, timeout: float
    ) -> encoder_pb2.TokenizeResponse:
        """Tokenize on the first replica that answers (ServiceError / PoolUnavailable)."""
        last: ServiceError | None = None
        for replica in self._order():
            try:
                return await replica.tokenize(request, timeout)
            except ServiceError as exc:
                if exc.code not in RETRYABLE:
                    raise
                last = exc
                self.mark_down(replica, f"{exc.code.name}: {exc.message}")
        detail = f"{last.code.name}: {last.message}" if last else "no replica"
        raise PoolUnavailable(f"{self.role} pool: no replica answered ({detail})")

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas))
