"""The RPC boundary: where an RPC's outcome becomes a span, metrics and a gRPC status.

Servicers of both sides stay a few lines each: their methods are decorated with `unary_rpc`
or `stream_rpc`, which open the call's SERVER span (continuing the caller's trace), record
the request counter and latency histogram, and turn whatever the core raised into one status
with a message a person can act on (`status_of`). Nothing below a servicer aborts a call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import grpc

from aegis_serve.common.errors import ServiceError, abort, invalid
from aegis_serve.protocol import BACKOFF_TRAILERS
from aegis_serve.telemetry.instruments import RpcInstruments
from aegis_serve.telemetry.rpc import RpcScope

log = logging.getLogger(__name__)

# Trailing metadata of an upstream (encoder) error passed on to the caller.
PASSED_TRAILERS = BACKOFF_TRAILERS

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def status_of(exc: BaseException) -> ServiceError:
    """The status a caller sees for `exc`: our own errors as raised, an upstream call's status
    (with its back-off hint), bad values as INVALID_ARGUMENT, anything else INTERNAL."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError):
        trailers = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if k in PASSED_TRAILERS)
        return ServiceError(exc.code(), exc.details() or exc.code().name, trailers)
    if isinstance(exc, ValueError):
        return invalid(str(exc))
    log.exception("unexpected error", exc_info=exc)
    return ServiceError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


async def end_with_status(
    rpc: RpcScope, context: grpc.aio.ServicerContext, exc: Exception
) -> NoReturn:
    """Record the status `exc` means for the caller on the span and metrics, and end the call
    with it. A call already aborted below the servicer (an undecodable request: see
    gateway/safe_decoding.py) keeps its status."""
    if isinstance(exc, grpc.aio.AbortError):
        rpc.fail(context.code() or grpc.StatusCode.UNKNOWN, context.details() or "")
        raise exc
    err = status_of(exc)
    rpc.fail(err.code, err.message)
    await abort(context, err)
    raise AssertionError("unreachable")  # abort raises


@dataclass(frozen=True)
class Boundary:
    """What a servicer's boundary records under: its service name, its metric instruments
    (`requests` counter, `duration` histogram) and how a call is labelled by pool."""

    service: str
    instruments: RpcInstruments
    pool_of: Callable[[Any, Any], str] = lambda request, response: ""

    def scope(self, method: str, context: grpc.aio.ServicerContext, request: Any) -> RpcScope:
        return RpcScope(
            self.instruments, self.service, method, context, self.pool_of(request, None)
        )


class HasBoundary(Protocol):
    boundary: Boundary


def unary_rpc(
    method: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """A unary servicer method behind the boundary (span, metrics, status)."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(self: HasBoundary, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        with self.boundary.scope(name, context, request) as rpc:
            try:
                response = await method(self, request, context)
            except Exception as exc:
                await end_with_status(rpc, context, exc)
                raise AssertionError("unreachable") from None  # it raises
            rpc.pool = self.boundary.pool_of(request, response)
            return response

    return handler


def stream_rpc(
    method: Callable[[Any, AsyncIterator[Req], grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[Any, AsyncIterator[Req], grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    """A bidirectional-streaming servicer method behind the boundary. Errors of single
    messages are the method's business (it answers them in-stream); what escapes it ends the
    stream with a status."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(
        self: HasBoundary, requests: AsyncIterator[Req], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Resp]:
        with self.boundary.scope(name, context, None) as rpc:
            try:
                async for response in method(self, requests, context):
                    yield response
            except Exception as exc:
                await end_with_status(rpc, context, exc)

    return handler
