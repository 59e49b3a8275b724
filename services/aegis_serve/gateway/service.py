"""EmbedService: the gRPC face of the `Gateway` (gateway/core.py), a few lines per RPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from opentelemetry import trace

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_serve.common.boundary import Boundary, status_of, stream_rpc, unary_rpc
from aegis_serve.gateway.core import Gateway
from aegis_serve.gateway.validation import ROLES, validate_embed
from aegis_serve.telemetry.rpc import span

SERVICE = embed_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name
# Metadata forwarded to encoders as is. Trace context (traceparent, tracestate, baggage) is
# not copied: each Encode attempt injects its own client span's context (pools.py).
FORWARDED_METADATA = ("x-request-id",)
STREAM_IN_FLIGHT = 16


def forwarded(context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
    return [(k, v) for k, v in (context.invocation_metadata() or ()) if k in FORWARDED_METADATA]


def _pool_label(request: object, response: object) -> str:
    """Metrics label: the pool that answered (fallback included), else the one asked for."""
    encoder = getattr(response, "encoder", "")
    return encoder or ROLES.get(getattr(request, "input_type", 0), "")


class EmbedServicer(embed_pb2_grpc.EmbedServiceServicer):
    """Hands each call to the Gateway; the boundary records it and maps its errors."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.boundary = Boundary(SERVICE, gateway.metrics, _pool_label)

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        default = self.gw.settings.encoder_timeout_s
        return default if remaining is None else min(remaining, default)

    async def _embed_one(
        self, request: embed_pb2.EmbedRequest, metadata: list[tuple[str, str]], timeout: float
    ) -> embed_pb2.EmbedResponse:
        with span("validate", **{"aegis.inputs": len(request.inputs)}):
            plan = validate_embed(request, self.gw.limits)
        return await self.gw.embed(plan, metadata, timeout)

    @unary_rpc
    async def Embed(
        self, request: embed_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embed_pb2.EmbedResponse:
        return await self._embed_one(request, forwarded(context), self._timeout(context))

    @stream_rpc
    async def EmbedStream(
        self,
        request_iterator: AsyncIterator[embed_pb2.EmbedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[embed_pb2.EmbedResponse]:
        """Requests run concurrently (bounded); responses come back in request order; a failed
        message is answered in-stream with `error` set and the stream goes on.

        The stream's span is the parent of one `embed` span per message (the message tasks
        copy the current context, so they join the caller's trace)."""
        with self.gw.admission.stream():
            async for response in self._stream(request_iterator, context):
                yield response

    async def _stream(
        self,
        request_iterator: AsyncIterator[embed_pb2.EmbedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[embed_pb2.EmbedResponse]:
        metadata = forwarded(context)
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
        pending: asyncio.Queue[asyncio.Task[embed_pb2.EmbedResponse] | None] = asyncio.Queue()

        async def one(request: embed_pb2.EmbedRequest) -> embed_pb2.EmbedResponse:
            with span("embed", **{"aegis.inputs": len(request.inputs)}) as message_span:
                try:
                    return await self._embed_one(request, metadata, self._timeout(context))
                except Exception as exc:
                    err = status_of(exc)
                    message_span.set_status(trace.Status(trace.StatusCode.ERROR, err.message))
                    return embed_pb2.EmbedResponse(
                        error=embed_pb2.Status(code=err.code.value[0], message=err.message)
                    )

        async def reader() -> None:
            try:
                async for request in request_iterator:
                    await slots.acquire()
                    await pending.put(asyncio.create_task(one(request)))
            finally:  # also when reading fails (a bad message): else the stream never ends
                await pending.put(None)

        read_task = asyncio.create_task(reader())
        try:
            while True:
                task = await pending.get()
                if task is None:
                    break
                response = await task
                slots.release()
                yield response
            await read_task
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read_task

    @unary_rpc
    async def Tokenize(
        self, request: embed_pb2.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> embed_pb2.TokenizeResponse:
        return await self.gw.tokenize(request, self._timeout(context))

    @unary_rpc
    async def GetInfo(
        self, request: embed_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> embed_pb2.GetInfoResponse:
        return self.gw.get_info()
