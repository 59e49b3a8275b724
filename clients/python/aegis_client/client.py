"""Sync and asyncio clients for ``aegis.embed.v1.EmbedService``.

Thin wrappers over the generated stub: they validate names client-side (so a typo fails
before a round trip), attach the bearer token and deadline to every call, and decode vectors
into numpy. Failed calls raise the typed errors of ``aegis_client.errors`` (code, details,
``retry_after``), never a raw ``grpc.RpcError``. The channel's default service config retries
the idempotent calls on UNAVAILABLE and RESOURCE_EXHAUSTED within the call's deadline, waiting
what the server's ``grpc-retry-pushback-ms`` trailer asks (gRFC A6).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import numpy as np

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_client.decode import ENCODING_NAMES, ENCODING_VALUES, decode_embeddings
from aegis_client.errors import from_rpc_error, invalid_input

try:  # optional: trace propagation when the caller uses OpenTelemetry
    from opentelemetry import propagate as _propagate
except ImportError:  # pragma: no cover - the client works without it
    _propagate = None

__all__ = ["DEFAULT_TARGET", "AsyncEmbedClient", "EmbedClient", "EmbedResult"]

DEFAULT_TARGET = "127.0.0.1:50051"

INPUT_TYPES: dict[str, int] = {
    "query": embed_pb2.INPUT_TYPE_QUERY,
    "document": embed_pb2.INPUT_TYPE_DOCUMENT,
}

# Large document batches easily pass gRPC's 4 MiB default receive limit (1000 x 768 floats is
# already ~3 MB), so the client accepts what a gateway is likely to send; user options win.
_DEFAULT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

EMBED_SERVICE = embed_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name
#: Unary methods safe to send again: they change nothing on the server.
IDEMPOTENT_METHODS = ("Embed", "Tokenize", "GetInfo")
#: gRPC's limit on attempts per call (gRFC A6 caps maxAttempts at 5).
MAX_ATTEMPTS_LIMIT = 5


def retry_service_config(max_attempts: int) -> str:
    """The channel's service config: retry the idempotent methods on UNAVAILABLE and
    RESOURCE_EXHAUSTED, exponential backoff from 100 ms, the server's pushback winning; gRPC
    stops retrying at the call's deadline."""
    if max_attempts < 2:
        return json.dumps({"methodConfig": []})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": EMBED_SERVICE, "method": m} for m in IDEMPOTENT_METHODS],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                    },
                }
            ],
            # gRFC A6 throttling: once failures outnumber successes (each failure costs a
            # token, each success gives back 0.1; retries stop below half of 10), a channel
            # stops retrying, so an overloaded service is not hit with 4x the calls.
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
        }
    )


#: One text, or any iterable of texts.
Inputs = str | Iterable[str]


@dataclass(frozen=True)
class EmbedResult:
    """Decoded vectors plus the response metadata callers usually need.

    ``timing`` holds the server's nanosecond timings (``queue_ns``, ``tokenization_ns``,
    ``inference_ns``, ``total_ns``); ``raw`` is the response message for anything else.
    """

    embeddings: np.ndarray
    model: str
    encoder: str
    dimensions: int
    encoding: str
    input_tokens: int
    fallback: bool
    timing: dict[str, int]
    raw: embed_pb2.EmbedResponse = field(repr=False)
    space_id: str = ""
    layers: int = 0
    tokens_per_input: list[int] = field(default_factory=list)


def _input_type_value(input_type: str) -> int:
    try:
        return INPUT_TYPES[input_type]
    except (KeyError, TypeError):
        raise invalid_input(
            f"unknown input_type {input_type!r}; expected one of {sorted(INPUT_TYPES)}"
        ) from None


def _encoding_value(encoding: str) -> int:
    try:
        return ENCODING_VALUES[encoding]
    except (KeyError, TypeError):
        raise invalid_input(
            f"unknown encoding {encoding!r}; expected one of {sorted(ENCODING_VALUES)}"
        ) from None


def _as_list(inputs: Inputs) -> list[str]:
    # A bare str is one input, not a sequence of characters.
    if isinstance(inputs, str):
        return [inputs]
    return list(inputs)


def _non_negative(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_input(f"{name} must be a non-negative int (0 = model default), got {value!r}")
    return value


def _embed_request(
    inputs: Inputs,
    input_type: str,
    dimensions: int,
    encoding: str,
    layers: int,
    truncate: bool,
) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(
        inputs=_as_list(inputs),
        input_type=_input_type_value(input_type),
        dimensions=_non_negative("dimensions", dimensions),
        encoding=_encoding_value(encoding),
        layers=_non_negative("layers", layers),
        truncate=embed_pb2.TRUNCATE_END if truncate else embed_pb2.TRUNCATE_NONE,
    )


def _tokenize_request(
    inputs: Inputs, input_type: str, add_prompt: bool
) -> embed_pb2.TokenizeRequest:
    return embed_pb2.TokenizeRequest(
        inputs=_as_list(inputs),
        input_type=_input_type_value(input_type),
        add_prompt=add_prompt,
    )


def _embed_result(response: embed_pb2.EmbedResponse, unpack_bits: bool) -> EmbedResult:
    timing = response.timing
    return EmbedResult(
        embeddings=decode_embeddings(response, unpack_bits=unpack_bits),
        model=response.model,
        encoder=response.encoder,
        dimensions=int(response.dimensions),
        encoding=ENCODING_NAMES[response.encoding],
        input_tokens=int(response.usage.input_tokens),
        fallback=bool(response.fallback),
        timing={
            "queue_ns": int(timing.queue_ns),
            "tokenization_ns": int(timing.tokenization_ns),
            "inference_ns": int(timing.inference_ns),
            "total_ns": int(timing.total_ns),
        },
        raw=response,
        space_id=response.space_id,
        layers=int(response.layers),
        tokens_per_input=list(response.usage.tokens_per_input),
    )


class _ClientBase:
    """Configuration shared by the sync and async clients (credentials, metadata, deadline,
    retries). ``max_attempts`` (1–5) bounds the tries of one idempotent call on UNAVAILABLE /
    RESOURCE_EXHAUSTED; 1 turns retries off. A ``grpc.service_config`` in ``options`` replaces
    the retry policy.

    Subclasses name the grpc module that makes their channels (``grpc`` or ``grpc.aio``).
    """

    _channels: Any = grpc

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        token: str | None = None,
        options: list | None = None,
        max_attempts: int = 4,
    ) -> None:
        if not tls and (root_certificates or private_key or certificate_chain):
            raise ValueError("certificates were given but tls=False; pass tls=True to use them")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("mTLS needs both private_key and certificate_chain")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(
                f"max_attempts must be 1..{MAX_ATTEMPTS_LIMIT} (1 = no retries), "
                f"got {max_attempts!r}"
            )
        self.target = target
        self.timeout = timeout
        self._credentials = (
            grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            if tls
            else None
        )
        # Sent as plain metadata (not call credentials) so the token also works on the
        # insecure localhost / sidecar-mesh setups where TLS is terminated elsewhere.
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        user_options = list(options or [])
        user_keys = {key for key, _ in user_options}
        defaults = [
            *_DEFAULT_OPTIONS,
            ("grpc.enable_retries", 1),
            ("grpc.service_config", retry_service_config(max_attempts)),
        ]
        self._options = [o for o in defaults if o[0] not in user_keys] + user_options
        if self._credentials is not None:
            self._channel = self._channels.secure_channel(
                target, self._credentials, options=self._options
            )
        else:
            self._channel = self._channels.insecure_channel(target, options=self._options)
        self._stub = embed_pb2_grpc.EmbedServiceStub(self._channel)

    def _deadline(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _call_metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The token, plus the caller's current trace context (W3C traceparent) when
        OpenTelemetry is installed, so the service's spans join the caller's trace."""
        if _propagate is None:
            return self._metadata
        carrier: dict[str, str] = {}
        _propagate.inject(carrier)
        if not carrier:
            return self._metadata
        return (*(self._metadata or ()), *carrier.items())


def _call(method: Callable[..., Any], request: Any, **kwargs: Any) -> Any:
    """One blocking call; a failure becomes its typed error (the grpc error as the cause)."""
    try:
        return method(request, **kwargs)
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


async def _acall(method: Callable[..., Awaitable[Any]], request: Any, **kwargs: Any) -> Any:
    """`_call` for grpc.aio."""
    try:
        return await method(request, **kwargs)
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


class EmbedClient(_ClientBase):
    """Blocking client. ``timeout`` is the default deadline (seconds) of every call.

    Use as a context manager or call :meth:`close` to release the channel.
    """

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel, e.g. for the health service or reflection."""
        return self._channel

    def embed(
        self,
        inputs: Inputs,
        input_type: str,
        *,
        dimensions: int = 0,
        encoding: str = "float32",
        layers: int = 0,
        truncate: bool = True,
        unpack_bits: bool = False,
        timeout: float | None = None,
    ) -> EmbedResult:
        """Embed ``inputs`` (a str or a list) as ``"query"`` or ``"document"``.

        ``dimensions``/``layers`` 0 mean full size/depth; ``truncate=False`` makes over-long
        inputs an INVALID_ARGUMENT error instead of cutting them. ``timeout`` (seconds)
        overrides the client's default deadline for this call.
        """
        request = _embed_request(inputs, input_type, dimensions, encoding, layers, truncate)
        response = _call(
            self._stub.Embed,
            request,
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )
        return _embed_result(response, unpack_bits)

    def embed_queries(self, texts: Inputs, **kwargs: Any) -> np.ndarray:
        """Vectors of search queries (query pool); keyword arguments as :meth:`embed`."""
        return self.embed(texts, "query", **kwargs).embeddings

    def embed_documents(self, texts: Inputs, **kwargs: Any) -> np.ndarray:
        """Vectors of documents/passages (document pool); keyword arguments as :meth:`embed`."""
        return self.embed(texts, "document", **kwargs).embeddings

    def tokenize(
        self,
        texts: Inputs,
        input_type: str,
        add_prompt: bool = True,
        *,
        timeout: float | None = None,
    ) -> embed_pb2.TokenizeResponse:
        """Tokens (ids, strings, offsets) as the routed model sees them, for chunking."""
        request = _tokenize_request(texts, input_type, add_prompt)
        return _call(
            self._stub.Tokenize,
            request,
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )

    def info(self, *, timeout: float | None = None) -> embed_pb2.GetInfoResponse:
        """The served space: dimensions, Matryoshka dims, layer options, pools and health."""
        return _call(
            self._stub.GetInfo,
            embed_pb2.GetInfoRequest(),
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )

    def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        self._channel.close()

    def __enter__(self) -> EmbedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEmbedClient(_ClientBase):
    """asyncio client (``grpc.aio``); same methods as :class:`EmbedClient`, awaited.

    Create it inside the event loop that will use it; use ``async with`` or await
    :meth:`close`.
    """

    _channels = grpc.aio

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying aio channel, e.g. for the health service or reflection."""
        return self._channel

    async def embed(
        self,
        inputs: Inputs,
        input_type: str,
        *,
        dimensions: int = 0,
        encoding: str = "float32",
        layers: int = 0,
        truncate: bool = True,
        unpack_bits: bool = False,
        timeout: float | None = None,
    ) -> EmbedResult:
        """Embed ``inputs`` as ``"query"`` or ``"document"``; see :meth:`EmbedClient.embed`."""
        request = _embed_request(inputs, input_type, dimensions, encoding, layers, truncate)
        response = await _acall(
            self._stub.Embed,
            request,
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )
        return _embed_result(response, unpack_bits)

    async def embed_queries(self, texts: Inputs, **kwargs: Any) -> np.ndarray:
        """Vectors of search queries (query pool); keyword arguments as :meth:`embed`."""
        return (await self.embed(texts, "query", **kwargs)).embeddings

    async def embed_documents(self, texts: Inputs, **kwargs: Any) -> np.ndarray:
        """Vectors of documents/passages (document pool); keyword arguments as :meth:`embed`."""
        return (await self.embed(texts, "document", **kwargs)).embeddings

    async def tokenize(
        self,
        texts: Inputs,
        input_type: str,
        add_prompt: bool = True,
        *,
        timeout: float | None = None,
    ) -> embed_pb2.TokenizeResponse:
        """Tokens (ids, strings, offsets) as the routed model sees them, for chunking."""
        request = _tokenize_request(texts, input_type, add_prompt)
        return await _acall(
            self._stub.Tokenize,
            request,
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )

    async def info(self, *, timeout: float | None = None) -> embed_pb2.GetInfoResponse:
        """The served space: dimensions, Matryoshka dims, layer options, pools and health."""
        return await _acall(
            self._stub.GetInfo,
            embed_pb2.GetInfoRequest(),
            timeout=self._deadline(timeout),
            metadata=self._call_metadata(),
        )

    async def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncEmbedClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
