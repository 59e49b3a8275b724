"""Bearer-token auth and per-token rate limits, as a grpc.aio server interceptor.

Tokens come from `AEGIS_AUTH_TOKENS` (comma-separated) and/or `AEGIS_AUTH_TOKENS_FILE`
(the Helm chart's Secret). File format, one token per line; blank and `#` lines ignored:

    s3cr3t-token                                  # plain token: every method
    s3cr3t-token name=ci                          # named (the name is what logs show)
    s3cr3t-token name=dash methods=GetInfo,Tokenize   # only these methods

`methods` takes short names (`Embed`) or full paths (`/aegis.embed.v1.EmbedService/Embed`).
Answers: no/malformed `authorization` header or unknown token -> UNAUTHENTICATED; a known
token calling a method it is not granted -> PERMISSION_DENIED; over `auth_rate_per_s`
(token bucket, `auth_burst` deep) -> RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms` (and
the deprecated `retry-after-ms`) trailing metadata: the wait until the bucket has a token.
Buckets are per gateway replica: N replicas admit up to N times the rate; a cluster-wide limit
is the mesh's global rate limit (docs/deploy.md). Health and reflection stay open for probes.
A token value is never logged: logs show its name, or `sha256:` + 8 hex digits of its hash
for unnamed tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from aegis_serve.common.errors import ServiceError, abort
from aegis_serve.protocol import retry_after

log = logging.getLogger(__name__)

OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True)
class Principal:
    """One configured token: the secret, a loggable name and the methods it may call."""

    secret: bytes = field(repr=False)
    name: str
    methods: frozenset[str] = frozenset()  # empty = every method

    def allows(self, method: str) -> bool:
        short = method.rsplit("/", 1)[-1]
        return not self.methods or method in self.methods or short in self.methods


def fingerprint(token: str) -> str:
    """A log-safe stand-in for an unnamed token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def parse_line(line: str, where: str) -> Principal | None:
    """One tokens-file line -> Principal (None for blank/comment lines)."""
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        return None
    token, *options = line.split()
    name, methods = fingerprint(token), frozenset[str]()
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("name", "methods") or not value:
            raise ValueError(f"{where}: unknown option {key!r}; use name=NAME or methods=A,B")
        if key == "name":
            name = value
        else:
            methods = frozenset(m.strip() for m in value.split(",") if m.strip())
    return Principal(token.encode(), name, methods)


def load_principals(tokens: Iterable[str], tokens_file: Path | None) -> list[Principal]:
    """Tokens from settings plus the tokens file; duplicate secrets are refused."""
    out = [p for i, t in enumerate(tokens) if (p := parse_line(t, f"auth_tokens[{i}]"))]
    if tokens_file is not None:
        try:
            lines = tokens_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read auth_tokens_file {tokens_file}: {exc}") from None
        for n, line in enumerate(lines, 1):
            if principal := parse_line(line, f"{tokens_file}:{n}"):
                out.append(principal)
    if len({p.secret for p in out}) != len(out):
        raise ValueError("the same auth token is configured twice")
    return out


class TokenBucket:
    """`rate` requests/s on average, `burst` at once; monotonic clock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.level = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class Denied(ServiceError):
    """Why a call is refused, as a gRPC status (any face answers it like other errors)."""


class Authenticator:
    """Decides per call: which principal, allowed or not, within its rate or not."""

    def __init__(self, principals: list[Principal], rate_per_s: float = 0, burst: int = 20) -> None:
        if not principals:
            raise ValueError("auth needs at least one token")
        self.principals = principals
        self.rate_per_s = rate_per_s
        self.buckets = {p.secret: TokenBucket(rate_per_s, burst) for p in principals}

    def identify(self, header: str | None) -> Principal:
        if header is None:
            raise Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing authorization metadata; send 'authorization: Bearer <token>'",
            )
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "malformed authorization metadata; expected 'Bearer <token>'",
            )
        presented = token.strip().encode()
        found: Principal | None = None
        for p in self.principals:  # compare with every token: timing does not tell which
            if hmac.compare_digest(presented, p.secret):
                found = p
        if found is None:
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        return found

    def check(self, method: str, header: str | None) -> Principal:
        """The caller's principal, or Denied with the status to answer."""
        principal = self.identify(header)
        if not principal.allows(method):
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {principal.name!r} may not call {method}",
            )
        if self.rate_per_s > 0:
            wait = self.buckets[principal.secret].take()
            if wait > 0:
                ms = max(1, math.ceil(wait * 1000))
                raise Denied(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit of {self.rate_per_s:g} requests/s for token {principal.name!r}"
                    f" exceeded; retry after {ms} ms",
                    retry_after(ms),
                )
        return principal


def _deny_handler(handler: grpc.RpcMethodHandler, denied: Denied) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers with `denied`'s status."""

    async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
        await abort(context, denied)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call except health and reflection before the handler runs."""

    def __init__(
        self, auth: Authenticator, on_denied: Callable[[str, grpc.StatusCode], None] | None = None
    ) -> None:
        self.auth = auth
        self.on_denied = on_denied  # metrics: (short method name, status)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        header = next(
            (v for k, v in details.invocation_metadata or () if k == "authorization"), None
        )
        try:
            principal = self.auth.check(method, header if isinstance(header, str) else None)
        except Denied as denied:
            log.warning("denied %s: %s", method, denied.message)
            if self.on_denied is not None:
                self.on_denied(method.rsplit("/", 1)[-1], denied.code)
            return _deny_handler(handler, denied)
        log.debug("%s by %s", method, principal.name)
        return handler
