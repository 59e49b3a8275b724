"""Errors that carry a gRPC status code and a message a person can act on."""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Raised inside handlers; turned into a gRPC status at the RPC boundary."""

    def __init__(
        self, code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = trailers


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


async def abort(context: grpc.aio.ServicerContext, err: ServiceError) -> None:
    """End the RPC with the error's status (never returns)."""
    if err.trailers:
        context.set_trailing_metadata(err.trailers)
    await context.abort(err.code, err.message)
