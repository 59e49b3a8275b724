"""gRPC server plumbing shared by the encoder and the gateway.

grpc.aio server with message limits, keepalive and max connection age (so pods added
behind a headless Service get traffic), optional TLS/mTLS, the standard health service,
server reflection, and graceful drain on SIGTERM/SIGINT: health flips to NOT_SERVING,
no new RPCs are accepted, in-flight RPCs get `shutdown_grace_s` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from aegis_serve.common.watched_files import WatchedFiles
from aegis_serve.settings import CommonSettings

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: CommonSettings) -> list[tuple[str, int]]:
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_s > 0:
        opts.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)))
        opts.append(("grpc.max_connection_age_grace_ms", int(settings.shutdown_grace_s * 1000)))
    return opts


def server_credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    """TLS when a cert/key pair is configured; mTLS (client certs required) when a CA is too.
    The files are watched: replacing them rotates the certificate without a restart."""
    if not (settings.tls_cert and settings.tls_key):
        return None
    cert, key, ca = settings.tls_cert, settings.tls_key, settings.tls_ca

    def load() -> grpc.ServerCertificateConfiguration:
        pair = [(key.read_bytes(), cert.read_bytes())]
        return grpc.ssl_server_certificate_configuration(
            pair, root_certificates=ca.read_bytes() if ca else None
        )

    # gRPC polls at every new TLS handshake: a replaced file serves new connections, open
    # ones keep their session (in-flight calls are not disturbed).
    files = WatchedFiles([cert, key, ca], load, "server TLS certificate")
    return grpc.dynamic_ssl_server_credentials(
        files.initial, files.poll, require_client_authentication=ca is not None
    )


class ServerHandle:
    """A started server, its bound port and its health servicer."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health: health_aio.HealthServicer,
        services: Sequence[str],
    ) -> None:
        self.server = server
        self.port = port
        self.health = health
        self.services = list(services)
        self.tls = False

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ["", *self.services]:
            await self.health.set(name, status)

    async def drain(self, grace: float) -> None:
        """Stop taking RPCs, tell probes, let in-flight RPCs finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    settings: CommonSettings,
    port: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> ServerHandle:
    """Create, bind and start a grpc.aio server with health and reflection."""
    server = grpc.aio.server(options=server_options(settings), interceptors=list(interceptors))
    register(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{settings.host}:{port}"
    creds = server_credentials(settings)
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"cannot bind {address}")
    await server.start()
    handle = ServerHandle(server, bound, health, service_names)
    handle.tls = creds is not None
    log.debug("listening on %s:%d (%s)", settings.host, bound, "tls" if creds else "plaintext")
    return handle


async def serve_until_signal(
    handle: ServerHandle, grace: float, on_stop: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Block until SIGTERM/SIGINT, then drain gracefully and run `on_stop`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server_done = asyncio.ensure_future(handle.server.wait_for_termination())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({server_done, stopper}, return_when=asyncio.FIRST_COMPLETED)
    log.info("draining (grace %.1fs)", grace)
    await handle.drain(grace)
    stopper.cancel()
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
