"""Run the gateway: connect to both pools (or load the embedded query pool), check the space,
serve EmbedService."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import grpc

from aegis.embed.v1 import embed_pb2_grpc
from aegis_serve import PROCESS_START
from aegis_serve.common.server import (
    NOT_SERVING,
    SERVING,
    ServerHandle,
    serve_until_signal,
    start_server,
)
from aegis_serve.common.watched_files import WatchedFiles
from aegis_serve.gateway.auth import Authenticator, AuthInterceptor, load_principals
from aegis_serve.gateway.core import Gateway
from aegis_serve.gateway.pools import Pool
from aegis_serve.gateway.safe_decoding import decode_safely
from aegis_serve.gateway.service import SERVICE, EmbedServicer
from aegis_serve.gateway.tls import pool_tls_files, server_name_options
from aegis_serve.protocol import ready_line
from aegis_serve.settings import EMBEDDED, GatewaySettings
from aegis_serve.telemetry.instruments import gateway_instruments
from aegis_serve.telemetry.providers import setup_telemetry

if TYPE_CHECKING:
    from aegis_serve.gateway.openai_http import HttpFace
    from aegis_serve.models.embedder import Embedder

log = logging.getLogger(__name__)

POOL_HEALTH = {"query": "aegis.pool.query", "document": "aegis.pool.document"}


class GatewayRuntime:
    """A started gateway: server handle, routing state and the health loop."""

    def __init__(self, handle: ServerHandle, gateway: Gateway) -> None:
        self.handle = handle
        self.gateway = gateway
        self.http: HttpFace | None = None  # the OpenAI-compatible face, when on
        self._loop_task: asyncio.Task[None] | None = None
        self._last_problem: str | None = None
        instruments = gateway_instruments()
        self._unwatch = [
            instruments.replica_sources.add(
                lambda: [(float(len(p.healthy)), {"pool": p.role}) for p in gateway.pools]
            ),
            instruments.configured_sources.add(
                lambda: [(float(len(p.replicas)), {"pool": p.role}) for p in gateway.pools]
            ),
        ]

    @property
    def port(self) -> int:
        return self.handle.port

    async def publish_health(self) -> None:
        gw = self.gateway
        any_pool = bool(gw.query.healthy or gw.document.healthy)
        await self.handle.set_serving(gw.serving and any_pool)
        for pool in gw.pools:
            await self.handle.health.set(
                POOL_HEALTH[pool.role], SERVING if pool.healthy and gw.serving else NOT_SERVING
            )
        if gw.problem != self._last_problem:
            if gw.problem:
                log.error("gateway not serving: %s", gw.problem)
            elif self._last_problem is not None:  # serving at start: the start line says so
                log.info("gateway serving space %s", gw.get_info().space_id)
            self._last_problem = gw.problem

    async def refresh(self) -> None:
        await self.gateway.refresh()
        await self.publish_health()

    def start_health_loop(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.gateway.settings.health_interval_s)
                try:
                    await self.refresh()
                except Exception:  # keep probing whatever happens
                    log.exception("health refresh failed")

        self._loop_task = asyncio.get_running_loop().create_task(loop(), name="pool-health")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.stop(self.gateway.settings.shutdown_grace_s)
        for unwatch in self._unwatch:
            unwatch()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for pool in self.gateway.pools:
            await pool.close()
        self.gateway.drop_replaced_channels()


def _auth_summary(settings: GatewaySettings) -> str:
    if not (settings.auth_tokens or settings.auth_tokens_file):
        return "off"
    rate = f", {settings.auth_rate_per_s:g} req/s per token" if settings.auth_rate_per_s else ""
    return f"on{rate}"


def authenticator(settings: GatewaySettings) -> Authenticator | None:
    """The bearer-token checker when tokens are configured (None: auth is off); one for both
    faces, so a token has one rate-limit bucket."""
    principals = load_principals(settings.auth_tokens, settings.auth_tokens_file)
    if not principals:
        return None
    log.debug(
        "bearer-token auth on: %d tokens (%s)%s",
        len(principals),
        ", ".join(p.name for p in principals),
        f", {settings.auth_rate_per_s:g} req/s per token" if settings.auth_rate_per_s else "",
    )
    return Authenticator(principals, settings.auth_rate_per_s, settings.auth_burst)


def auth_interceptors(auth: Authenticator | None) -> list[grpc.aio.ServerInterceptor]:
    """The bearer-token interceptor when auth is on."""
    if auth is None:
        return []
    requests = gateway_instruments().requests

    def count_denied(method: str, code: grpc.StatusCode) -> None:
        requests.add(1, {"method": method, "pool": "none", "status": code.name})

    return [AuthInterceptor(auth, count_denied)]


def connect_pools(
    settings: GatewaySettings, pool_tls: WatchedFiles[grpc.ChannelCredentials] | None
) -> tuple[Pool, Pool]:
    """Channels to both pools' remote targets: plaintext, or TLS (mTLS with a client cert)
    per pool_tls_*. The embedded query replica, if any, is added by `build_pools`."""
    creds = pool_tls.initial if pool_tls else None
    extra = server_name_options(settings.pool_tls_server_name)
    return (
        Pool.connect(
            "query",
            settings.remote_query,
            settings.max_message_bytes,
            creds,
            extra,
            settings.query_coalesce_calls,
            settings.query_coalesce_texts,
        ),
        Pool.connect("document", settings.document, settings.max_message_bytes, creds, extra),
    )


async def build_pools(
    settings: GatewaySettings,
    query_embedder: Embedder | None = None,
    pool_tls: WatchedFiles[grpc.ChannelCredentials] | None = None,
) -> tuple[Pool, Pool]:
    """Both pools; with `--query embedded` the query model is loaded into this process first
    (`query_embedder`: an already loaded one, as tests pass)."""
    query, document = connect_pools(settings, pool_tls)
    if settings.embedded_query:
        from aegis_serve.gateway.embedded import start_embedded_query

        try:
            query.replicas.insert(0, await start_embedded_query(settings, query_embedder))
        except BaseException:
            await asyncio.gather(query.close(), document.close())
            raise
    return query, document


async def start_gateway(
    settings: GatewaySettings, query_embedder: Embedder | None = None
) -> GatewayRuntime:
    """Start the gateway on settings.port (0 = ephemeral) after a first probe of the pools."""
    auth = authenticator(settings)
    interceptors = auth_interceptors(auth)
    pool_tls = pool_tls_files(settings.pool_tls_ca, settings.pool_tls_cert, settings.pool_tls_key)
    query, document = await build_pools(settings, query_embedder, pool_tls)
    gateway = Gateway(settings, query, document)
    gateway.pool_tls = pool_tls
    servicer = EmbedServicer(gateway)
    handle = await start_server(
        settings,
        settings.port,
        lambda server: decode_safely(
            embed_pb2_grpc.add_EmbedServiceServicer_to_server, servicer, server
        ),
        [SERVICE],
        interceptors,
    )
    runtime = GatewayRuntime(handle, gateway)
    await runtime.refresh()
    runtime.start_health_loop()
    if settings.http_port is not None:
        try:
            runtime.http = await _start_http_face(gateway, auth)
        except BaseException:  # no half-started gateway left listening on gRPC
            await handle.server.stop(0)
            await runtime.close()
            raise
    return runtime


async def _start_http_face(gateway: Gateway, auth: Authenticator | None) -> HttpFace:
    try:
        from aegis_serve.gateway.openai_http import start_http_face
    except ImportError as exc:
        raise ValueError(
            f"--http-port needs the http extra (pip install 'aegis-serve[http]'): {exc}"
        ) from None
    settings = gateway.settings
    return await start_http_face(gateway, auth, settings.host, settings.http_port or 0)


async def run_gateway(settings: GatewaySettings) -> None:
    telemetry = setup_telemetry(
        "aegis-gateway", metrics_host=settings.host, metrics_port=settings.metrics_port
    )
    runtime = await start_gateway(settings)
    address = f"{settings.host}:{runtime.port}"
    gw = runtime.gateway
    pools = ", ".join(
        f"{p.role} {len(p.healthy)}/{len(p.replicas)} healthy"
        + f" ({sum(r.verified for r in p.healthy)} verified by canaries)"
        + (" (embedded)" if any(r.kind == EMBEDDED for r in p.replicas) else "")
        for p in gw.pools
    )
    space = gw.get_info().space_id
    state = f"serving space {space}" if gw.serving else f"NOT serving: {gw.problem}"
    log.info(
        "gateway ready in %.1f s: %s; %s; listening on %s (%s); auth %s; telemetry %s",
        time.monotonic() - PROCESS_START, state, pools, address,
        "tls" if runtime.handle.tls else "plaintext", _auth_summary(settings), telemetry.short,
    )  # fmt: skip
    if runtime.http is not None:
        scheme = "https" if runtime.http.tls else "http"
        log.info("OpenAI-compatible embeddings at %s://%s:%d/v1/embeddings", scheme,
                 settings.host, runtime.http.port)  # fmt: skip
    metrics = telemetry.metrics_address or "off"
    print(ready_line("gateway", address=address, serving=runtime.gateway.serving, metrics=metrics),
          flush=True)  # fmt: skip
    try:
        await serve_until_signal(runtime.handle, settings.shutdown_grace_s, runtime.close)
    finally:
        telemetry.shutdown()
