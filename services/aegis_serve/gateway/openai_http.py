"""An OpenAI-compatible HTTP face (`POST /v1/embeddings`) in front of the same gateway core.

Off unless `--http-port` is set; gRPC stays the primary API. It exists so tools that already
speak OpenAI's embeddings API (its SDKs, LangChain's `OpenAIEmbeddings`, RAG frameworks) can
use the service unchanged, as text-embeddings-inference and Infinity allow.

Mapping onto `EmbedRequest`:
- the pool: `model` `aegis-query` → QUERY, `aegis-document` → DOCUMENT, `aegis` (or the served
  model's own name) → the `input_type` field (`query` | `document`, Cohere's `search_query` |
  `search_document` accepted too; default `document`, the full model). An explicit
  `input_type` that contradicts the model name is refused, never silently overridden.
- `dimensions` → Matryoshka `dimensions` (one of the offered dims); `encoding_format` `float`
  → JSON floats, `base64` → little-endian float32 bytes in base64 (what the OpenAI SDKs ask
  for by default and decode).
- `input`: one string or a list of strings. Token-id arrays are refused: tokens of another
  tokenizer mean nothing to these models.
Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with the HTTP
status of the gRPC code the core raised (the message is the same); 429 carries `Retry-After`
and `retry-after-ms`, which the OpenAI SDKs honour. Bearer tokens, per-token grants (as the
`Embed` method) and rate limits are the gRPC face's: one bucket per token whichever face it
uses. Requests are counted and traced at the same boundary as RPCs (service
`aegis.http.OpenAI`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Literal

import grpc
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from aegis.embed.v1 import embed_pb2
from aegis_serve.common.boundary import status_of
from aegis_serve.common.errors import ServiceError, invalid
from aegis_serve.gateway.auth import Authenticator
from aegis_serve.gateway.core import Gateway
from aegis_serve.gateway.validation import validate_embed
from aegis_serve.protocol import PUSHBACK_KEY
from aegis_serve.telemetry.rpc import RpcScope

log = logging.getLogger(__name__)

SERVICE = "aegis.http.OpenAI"
EMBED_METHOD = "/aegis.embed.v1.EmbedService/Embed"  # grants and buckets are the gRPC face's
GENERIC_MODEL = "aegis"
POOL_MODELS = {"aegis-query": "query", "aegis-document": "document"}
INPUT_TYPES = {
    "query": "query",
    "search_query": "query",
    "document": "document",
    "search_document": "document",
}
INPUT_TYPE_VALUES = {"query": embed_pb2.INPUT_TYPE_QUERY, "document": embed_pb2.INPUT_TYPE_DOCUMENT}

# gRPC status -> (HTTP status, OpenAI error type).
HTTP_OF: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
    grpc.StatusCode.FAILED_PRECONDITION: (503, "service_unavailable_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}


class EmbeddingsRequest(BaseModel):
    """OpenAI's `CreateEmbeddingRequest` plus `input_type` (extra fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    input_type: str | None = None


class HeadersContext:
    """What the RPC scope reads from a gRPC context, from HTTP headers (trace context)."""

    def __init__(self, request: Request) -> None:
        self._headers = request.headers

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self._headers.items())


def error_response(err: ServiceError, param: str | None = None) -> JSONResponse:
    """OpenAI's error body for a gRPC status; 429 says when to retry."""
    status, kind = HTTP_OF.get(err.code, (500, "server_error"))
    headers: dict[str, str] = {}
    pushback = dict(err.trailers).get(PUSHBACK_KEY)
    if pushback is not None:
        headers["retry-after-ms"] = pushback
        headers["Retry-After"] = str(max(1, math.ceil(int(pushback) / 1000)))
    body = {"message": err.message, "type": kind, "param": param, "code": err.code.name.lower()}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class OpenAIFace:
    """The routes, bound to one gateway core (and its authenticator, if auth is on)."""

    def __init__(self, gateway: Gateway, auth: Authenticator | None) -> None:
        self.gw = gateway
        self.auth = auth
        self.app = FastAPI(
            title="aegis-serve OpenAI-compatible embeddings",
            docs_url=None,
            redoc_url=None,
            openapi_url="/openapi.json",
        )
        self.app.add_exception_handler(RequestValidationError, self._bad_body)
        self.app.post("/v1/embeddings")(self.embeddings)
        self.app.get("/v1/models")(self.models)

    # ----------------------------------------------------------------- helpers
    async def _bad_body(self, _request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid JSON body"
        return error_response(invalid(message), where or None)

    def _check_auth(self, request: Request) -> None:
        """Raises `auth.Denied` (a ServiceError) when the caller may not embed."""
        if self.auth is not None:
            self.auth.check(EMBED_METHOD, request.headers.get("authorization"))

    def _model_names(self) -> dict[str, str]:
        """Accepted `model` values -> pool role ("" = decided by input_type)."""
        names = {GENERIC_MODEL: "", **POOL_MODELS}
        for pool in self.gw.pools:
            if pool.info is not None and pool.info.model:
                names.setdefault(pool.info.model, "")
        return names

    def _role(self, body: EmbeddingsRequest) -> str:
        names = self._model_names()
        if body.model not in names:
            raise ServiceError(
                grpc.StatusCode.NOT_FOUND,
                f"model {body.model!r} does not exist; use one of {sorted(names)}",
            )
        asked = None
        if body.input_type is not None:
            asked = INPUT_TYPES.get(body.input_type)
            if asked is None:
                raise invalid(f"input_type {body.input_type!r} is not one of {sorted(INPUT_TYPES)}")
        fixed = names[body.model]
        if fixed and asked and fixed != asked:
            raise invalid(f"model {body.model!r} embeds {fixed}s; input_type says {asked}")
        return fixed or asked or "document"

    @staticmethod
    def _inputs(body: EmbeddingsRequest) -> list[str]:
        if isinstance(body.input, str):
            return [body.input]
        if any(not isinstance(x, str) for x in body.input):
            raise invalid("input: token arrays are not supported; send text")
        return list(body.input)  # type: ignore[arg-type]

    @staticmethod
    def _data(resp: embed_pb2.EmbedResponse, fmt: str) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(resp.embeddings):
            if fmt == "base64":
                raw = np.asarray(row.values, dtype="<f4").tobytes()
                vector: Any = base64.b64encode(raw).decode("ascii")
            else:
                vector = list(row.values)
            yield {"object": "embedding", "index": i, "embedding": vector}

    # ------------------------------------------------------------------ routes
    async def embeddings(self, body: EmbeddingsRequest, request: Request) -> JSONResponse:
        """`POST /v1/embeddings`."""
        rpc = RpcScope(self.gw.metrics, SERVICE, "Embeddings", HeadersContext(request))  # type: ignore[arg-type]
        with rpc:
            try:
                self._check_auth(request)
                role = self._role(body)
                rpc.pool = role
                grpc_request = embed_pb2.EmbedRequest(
                    inputs=self._inputs(body),
                    input_type=INPUT_TYPE_VALUES[role],
                    dimensions=body.dimensions or 0,
                    encoding=embed_pb2.ENCODING_FLOAT32,
                )
                plan = validate_embed(grpc_request, self.gw.limits)
                request_id = request.headers.get("x-request-id")
                metadata = [("x-request-id", request_id)] if request_id else []
                resp = await self.gw.embed(plan, metadata, self.gw.settings.encoder_timeout_s)
            except Exception as exc:
                err = status_of(exc)
                rpc.fail(err.code, err.message)
                if err.code != grpc.StatusCode.INVALID_ARGUMENT:
                    log.info("POST /v1/embeddings: %s: %s", err.code.name, err.message)
                return error_response(err)
            rpc.pool = resp.encoder
            tokens = int(resp.usage.input_tokens)
            return JSONResponse(
                {
                    "object": "list",
                    "data": list(self._data(resp, body.encoding_format)),
                    "model": body.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

    async def models(self, request: Request) -> JSONResponse:
        """`GET /v1/models`: the names `model` accepts."""
        try:
            self._check_auth(request)
        except ServiceError as err:
            return error_response(err)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "aegis-serve"}
            for name in sorted(self._model_names())
        ]
        return JSONResponse({"object": "list", "data": data})


def _quiet_server(config: Any) -> Any:
    """A uvicorn server without its own signal handlers: the gateway's shutdown stops it."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)


class HttpFace:
    """A started HTTP face: its port and how to stop it."""

    def __init__(self, server: Any, task: asyncio.Task[None], port: int, tls: bool) -> None:
        self.server = server
        self.task = task
        self.port = port
        self.tls = tls

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish for up to `grace_s`, then close."""
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace_s + 1)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def start_http_face(
    gateway: Gateway, auth: Authenticator | None, host: str, port: int
) -> HttpFace:
    """Serve the OpenAI-compatible face on host:port (0 = a free port) in this event loop;
    TLS (and mTLS) with the gateway's own certificate files when it has them. Unlike the gRPC
    server, uvicorn reads them once: a renewed certificate reaches this face at the next
    restart (a rolling restart after cert-manager renews)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return await _serve_on(gateway, auth, sock)
    except BaseException:
        sock.close()
        raise


async def _serve_on(gateway: Gateway, auth: Authenticator | None, sock: socket.socket) -> HttpFace:
    import uvicorn

    settings = gateway.settings
    tls = settings.tls_cert is not None
    config = uvicorn.Config(
        OpenAIFace(gateway, auth).app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        ssl_certfile=str(settings.tls_cert) if tls else None,
        ssl_keyfile=str(settings.tls_key) if tls else None,
        # mTLS on gRPC means mTLS here too: no way around the client-certificate check.
        ssl_ca_certs=str(settings.tls_ca) if tls and settings.tls_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and settings.tls_ca else ssl.CERT_NONE,
    )
    server = _quiet_server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the HTTP face stopped while starting")
        await asyncio.sleep(0.01)
    return HttpFace(server, task, sock.getsockname()[1], tls)
