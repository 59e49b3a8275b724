"""Run the gateway: connect to both pools, check the space, serve EmbedService."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_serve.common.server import (
    NOT_SERVING,
    SERVING,
    ServerHandle,
    serve_until_signal,
    start_server,
)
from aegis_serve.gateway.pools import Pool
from aegis_serve.gateway.service import EmbedServicer, Gateway
from aegis_serve.settings import GatewaySettings

log = logging.getLogger(__name__)

SERVICE_NAME = embed_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name
POOL_HEALTH = {"query": "aegis.pool.query", "document": "aegis.pool.document"}


class GatewayRuntime:
    """A started gateway: server handle, routing state and the health loop."""

    def __init__(self, handle: ServerHandle, gateway: Gateway) -> None:
        self.handle = handle
        self.gateway = gateway
        self._loop_task: asyncio.Task[None] | None = None
        self._last_problem: str | None = None

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
            else:
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
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for pool in self.gateway.pools:
            await pool.close()


async def start_gateway(settings: GatewaySettings) -> GatewayRuntime:
    """Start the gateway on settings.port (0 = ephemeral) after a first probe of the pools."""
    query = Pool.connect("query", settings.query, settings.max_message_bytes)
    document = Pool.connect("document", settings.document, settings.max_message_bytes)
    gateway = Gateway(settings, query, document)
    servicer = EmbedServicer(gateway)
    from aegis_serve.common.wire import decode_safely  # undecodable bytes -> INVALID_ARGUMENT

    handle = await start_server(
        settings,
        settings.port,
        lambda server: decode_safely(
            embed_pb2_grpc.add_EmbedServiceServicer_to_server, servicer, server
        ),
        [SERVICE_NAME],
    )
    runtime = GatewayRuntime(handle, gateway)
    await runtime.refresh()
    runtime.start_health_loop()
    return runtime


async def run_gateway(settings: GatewaySettings) -> None:
    runtime = await start_gateway(settings)
    print(
        f"READY gateway address={settings.host}:{runtime.port} serving={runtime.gateway.serving}",
        flush=True,
    )
    await serve_until_signal(runtime.handle, settings.shutdown_grace_s, runtime.close)
