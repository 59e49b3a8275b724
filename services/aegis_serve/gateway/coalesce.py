"""Coalescing small Encode calls to one remote replica (opportunistic, no timer).

Each gRPC call costs both Python processes about as much CPU as the query model's
share of a batched forward, so under load the hops, not the model, bound a remote query pool.
A `Coalescer` lets up to `max_calls` Encode calls be in flight to its replica, each sent the
moment it arrives, so a lone query waits for nothing. Requests arriving while that many are
out wait in the gateway; when one returns, those waiting leave together as one call (up to
`max_texts` texts), and each gets its own rows of the answer back.

Only requests that would get the same answer either way are coalesced: the same prompt and
depth, no per-request token budget and no `reject_overlong` (the encoder judges both per
call). Everything the encoder says of a coalesced call (a full queue, a failed batch, an
ejected replica) is what each member would have been told alone, so every member gets that
status and the pool retries it elsewhere as before. A member whose deadline passes stops
waiting (DEADLINE_EXCEEDED); one cancelled before its call leaves is never sent; a call whose
members were all cancelled is cancelled. The coalesced call carries the first member's
metadata (request id, trace context): its encoder spans hang under that member's trace; the
attempt span of each member that waited says how many requests shared its call
(`aegis.coalesced_requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from aegis.encoder.v1 import encoder_pb2
from aegis_serve.common.errors import ServiceError
from aegis_serve.encoder.result import Encoded
from aegis_serve.protocol import REQUEST_TOKENS_KEY

Metadata = Sequence[tuple[str, str]]
Send = Callable[[encoder_pb2.EncodeRequest, float, Metadata], Awaitable[Encoded]]


@dataclass(eq=False)
class _Member:
    request: encoder_pb2.EncodeRequest
    deadline: float  # loop time
    metadata: Metadata
    future: asyncio.Future[Encoded]
    shared_by: int = 1  # requests in the call it left in

    @property
    def key(self) -> tuple[str, int]:
        return self.request.prompt_name, self.request.layers


@dataclass
class CoalesceStats:
    """Running totals (read by the tests)."""

    calls: int = 0  # Encode calls sent
    coalesced_calls: int = 0  # of which carried more than one request
    requests: int = 0  # requests answered through the coalescer


@dataclass(eq=False)
class Coalescer:
    """At most `max_calls` Encode calls in flight to one replica; the requests that wait
    meanwhile leave together. `max_calls` 0 sends every request as its own call."""

    send: Send
    max_calls: int = 2
    max_texts: int = 64
    stats: CoalesceStats = field(default_factory=CoalesceStats)
    _in_flight: int = 0
    _waiting: list[_Member] = field(default_factory=list)
    _groups: set[asyncio.Task[None]] = field(default_factory=set)

    def coalescable(self, request: encoder_pb2.EncodeRequest, metadata: Metadata) -> bool:
        return (
            self.max_calls > 0
            and len(request.texts) < self.max_texts
            and not request.reject_overlong
            and all(k != REQUEST_TOKENS_KEY for k, _ in metadata)
        )

    async def encode(
        self, request: encoder_pb2.EncodeRequest, timeout: float, metadata: Metadata
    ) -> Encoded:
        if not self.coalescable(request, metadata):
            return await self.send(request, timeout, metadata)
        self.stats.requests += 1
        if self._in_flight < self.max_calls and not self._waiting:
            self._in_flight += 1
            self.stats.calls += 1
            try:
                return await self.send(request, timeout, metadata)
            finally:
                self._in_flight -= 1
                self._flush()
        loop = asyncio.get_running_loop()
        member = _Member(request, loop.time() + timeout, metadata, loop.create_future())
        self._waiting.append(member)
        try:
            encoded = await asyncio.wait_for(member.future, timeout)
        except TimeoutError:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        current = trace.get_current_span()  # the pool's attempt span, when sampled
        if current.is_recording():
            current.set_attribute("aegis.coalesced_requests", member.shared_by)
        return encoded

    def _flush(self) -> None:
        """Send what waits, as few calls as the free slots and the text limit allow."""
        self._waiting = [m for m in self._waiting if not m.future.done()]
        while self._waiting and self._in_flight < self.max_calls:
            group = self._take_group()
            for member in group:
                member.shared_by = len(group)
            self._in_flight += 1
            self.stats.calls += 1
            self.stats.coalesced_calls += len(group) > 1
            task = asyncio.get_running_loop().create_task(self._send_group(group))
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)
            unwanted = functools.partial(_cancel_if_unwanted, group, task)
            for member in group:  # all members gone: nobody wants this call any more
                member.future.add_done_callback(unwanted)

    def _take_group(self) -> list[_Member]:
        """The oldest waiting request and the later ones it can share a call with."""
        first = self._waiting[0]
        group: list[_Member] = []
        texts = 0
        rest: list[_Member] = []
        for member in self._waiting:
            n = len(member.request.texts)
            if member.key == first.key and (not group or texts + n <= self.max_texts):
                group.append(member)
                texts += n
            else:
                rest.append(member)
        self._waiting = rest
        return group

    async def _send_group(self, group: list[_Member]) -> None:
        first = group[0].request
        request = encoder_pb2.EncodeRequest(
            texts=[t for m in group for t in m.request.texts],
            prompt_name=first.prompt_name,
            layers=first.layers,
        )
        timeout = max(m.deadline for m in group) - asyncio.get_running_loop().time()
        try:
            encoded = await self.send(request, max(timeout, 0.001), group[0].metadata)
            if encoded.rows != len(request.texts):
                raise ServiceError(grpc.StatusCode.INTERNAL, "encoder returned a malformed matrix")
        except asyncio.CancelledError:
            _fail(group, ServiceError(grpc.StatusCode.UNAVAILABLE, "gateway shutting down"))
            raise
        except Exception as exc:  # each member would have been told the same alone
            _fail(group, exc)
        else:
            offset = 0
            for member in group:
                rows = len(member.request.texts)
                if not member.future.done():
                    member.future.set_result(_rows(encoded, offset, rows))
                offset += rows
        finally:
            self._in_flight -= 1
            self._flush()

    def fail_waiting(self, err: ServiceError) -> int:
        """Fail every request still waiting for a call (the replica was ejected: the pool
        retries them elsewhere instead of sending them after the calls it ended)."""
        waiting, self._waiting = self._waiting, []
        return _fail(waiting, err)

    async def close(self) -> None:
        """Fail what waits and cancel the calls in flight (their members fail UNAVAILABLE)."""
        self.fail_waiting(ServiceError(grpc.StatusCode.UNAVAILABLE, "gateway shutting down"))
        for task in list(self._groups):
            task.cancel()
        for task in list(self._groups):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _rows(encoded: Encoded, offset: int, rows: int) -> Encoded:
    """One member's share of a coalesced call's answer (the call's timings are its own)."""
    return Encoded(
        matrix=encoded.matrix[offset : offset + rows],
        token_counts=list(encoded.token_counts[offset : offset + rows]),
        queue_ns=encoded.queue_ns,
        tokenization_ns=encoded.tokenization_ns,
        inference_ns=encoded.inference_ns,
        model=encoded.model,
        layers=encoded.layers,
    )


def _fail(group: list[_Member], exc: BaseException) -> int:
    """The call's status for every member still waiting (a ServiceError of its own each);
    returns how many that was."""
    failed = 0
    for member in group:
        if member.future.done():
            continue
        if isinstance(exc, ServiceError):
            member.future.set_exception(ServiceError(exc.code, exc.message, exc.trailers))
        else:
            member.future.set_exception(exc)
        failed += 1
    return failed


def _cancel_if_unwanted(
    group: list[_Member], task: asyncio.Task[None], _: asyncio.Future[Encoded]
) -> None:
    if not task.done() and all(m.future.cancelled() for m in group):
        task.cancel()
