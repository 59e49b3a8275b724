"""Typed errors of the aegis clients: one class per kind of failure a caller acts on.

A caller should not need grpc internals to tell "fix the input" from "retry later": every
failed call raises an :class:`AegisError` subclass carrying the gRPC ``code``, the server's
``details`` and, for overload and rate limits, ``retry_after`` (seconds, read from the
standard ``grpc-retry-pushback-ms`` trailer). The original ``grpc.RpcError`` stays attached as
``__cause__``. Client-side validation raises :class:`InvalidInputError` too (it is also a
``ValueError``), so one ``except`` covers a bad input found before or after the round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

__all__ = [
    "AegisError",
    "AuthenticationError",
    "CancelledError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidInputError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnavailableError",
    "from_rpc_error",
]

#: gRFC A6 retry pushback: milliseconds the server asks the client to wait.
PUSHBACK_KEY = "grpc-retry-pushback-ms"
#: The gateway's older back-off trailer (same value; deprecated, read when the other is absent).
LEGACY_RETRY_AFTER_KEY = "retry-after-ms"


class AegisError(Exception):
    """A failed call. ``code`` is the gRPC status, ``details`` the server's message,
    ``retry_after`` the wait (seconds) the server asked for, or None."""

    #: Whether the same call may succeed when tried again later.
    retryable = False

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        retry_after: float | None = None,
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.retry_after = retry_after
        self.trailing_metadata = tuple(trailing_metadata)


class InvalidInputError(AegisError, ValueError):
    """The request itself is wrong (empty input, unknown dims, too many tokens…): fix it."""


class AuthenticationError(AegisError):
    """No bearer token, or one the gateway does not know."""


class PermissionDeniedError(AegisError):
    """The token is valid but may not call this method."""


class RateLimitError(AegisError):
    """Rate limited or overloaded (RESOURCE_EXHAUSTED): wait ``retry_after`` and retry."""

    retryable = True


class UnavailableError(AegisError):
    """The gateway or every replica of the routed pool cannot serve now: retry later."""

    retryable = True


class DeadlineExceededError(AegisError):
    """The call did not finish within its deadline."""


class FailedPreconditionError(AegisError):
    """The service is up but refuses to serve (e.g. its pools are in different spaces)."""


class CancelledError(AegisError):
    """The call was cancelled (the channel closed, or the server stopped mid-call)."""


class ServerError(AegisError):
    """A failure inside the service (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED)."""


_CLASS_OF: dict[grpc.StatusCode, type[AegisError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: InvalidInputError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
    grpc.StatusCode.UNIMPLEMENTED: ServerError,
}


def retry_after_seconds(metadata: Sequence[tuple[str, str | bytes]]) -> float | None:
    """The server's requested wait: the standard pushback trailer, else the legacy one."""
    values = {key: value for key, value in metadata}
    for key in (PUSHBACK_KEY, LEGACY_RETRY_AFTER_KEY):
        raw = values.get(key)
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace")
        if raw is not None and raw.strip().isdigit():
            return int(raw) / 1000.0
    return None


def from_rpc_error(exc: grpc.RpcError) -> AegisError:
    """The typed error for a failed call (its class follows the status code)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    trailing = getattr(exc, "trailing_metadata", None)
    metadata = tuple(trailing() or ()) if callable(trailing) else ()
    cls = _CLASS_OF.get(code, AegisError)
    return cls(
        code,
        details or code.name,
        retry_after=retry_after_seconds(metadata),
        trailing_metadata=metadata,
    )


def invalid_input(message: str) -> InvalidInputError:
    """A client-side validation failure, typed as the server's would be."""
    return InvalidInputError(grpc.StatusCode.INVALID_ARGUMENT, message)
