"""Register a servicer so that undecodable request bytes get INVALID_ARGUMENT.

With the generated `add_*Servicer_to_server`, a request that does not parse (corrupt wire
format, invalid UTF-8 in a string field: what a lone surrogate becomes on the wire) fails
inside grpc with UNKNOWN "Unexpected DecodeError", which reads like a server bug and tells
the caller nothing. Here the deserializer keeps the failure as a value and the handler
answers it with INVALID_ARGUMENT; EmbedStream gets the same for a bad message mid-stream.
Found by the fuzz campaign (aegis_lab/chaos/fuzz.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, type_name: str, error: str) -> None:
        self.message = f"request is not a valid {type_name}: {error}"


def _deserializer(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def safe(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return Undecodable(getattr(parse, "__qualname__", "request").split(".")[0], str(exc))

    return safe


def _unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behaviour(request, context)

    return handle


def _bidi(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        async def checked() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                yield request

        async for response in behaviour(checked(), context):
            yield response

    return handle


class _Recorder:
    """Stands in for the server while a generated add_*_to_server registers its handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = handlers


def decode_safely(
    add_to_server: Callable[[object, Any], None], servicer: object, server: grpc.aio.Server
) -> None:
    """`add_to_server(servicer, server)` (a generated function), with each handler's
    deserializer made safe: undecodable bytes become INVALID_ARGUMENT, not UNKNOWN."""
    recorder = _Recorder()
    add_to_server(servicer, recorder)
    for service, handlers in recorder.services.items():
        safe = {}
        for name, h in handlers.items():
            if h.unary_unary is not None:
                behaviour = {"unary_unary": _unary(h.unary_unary)}
            elif h.stream_stream is not None:
                behaviour = {"stream_stream": _bidi(h.stream_stream)}
            else:  # pragma: no cover - no such RPC in our services yet
                raise NotImplementedError(f"{service}/{name}: only unary and bidi RPCs")
            safe[name] = h._replace(
                request_deserializer=_deserializer(h.request_deserializer), **behaviour
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, safe),))
        server.add_registered_method_handlers(service, safe)
