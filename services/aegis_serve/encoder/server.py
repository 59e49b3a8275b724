"""Run an encoder pool replica: load the model, start batching, serve gRPC until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from aegis_serve.common.server import ServerHandle, serve_until_signal, start_server
from aegis_serve.encoder.batching import Batcher
from aegis_serve.encoder.observe import EncoderObserver
from aegis_serve.encoder.service import EncoderServicer, warm_up
from aegis_serve.models.embedder import Embedder
from aegis_serve.settings import EncoderSettings
from aegis_serve.telemetry.providers import setup_telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name


def load_embedder(settings: EncoderSettings) -> Embedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Embedder(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        threads=settings.threads or None,
        attention=settings.attention,
        backend=settings.backend,
    )


async def start_encoder(
    settings: EncoderSettings, embedder: Embedder | None = None
) -> tuple[ServerHandle, EncoderServicer]:
    """Start a replica on settings.port (0 = ephemeral) and mark it SERVING."""
    if embedder is None:
        embedder = await asyncio.to_thread(load_embedder, settings)
        await asyncio.to_thread(warm_up, embedder)
    observer = EncoderObserver(settings.role)
    batcher = Batcher(
        embedder,
        embedder.dim,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_texts=settings.max_batch_texts,
        max_queue_texts=settings.max_queue_texts,
        wait_s=settings.batch_wait_ms / 1000,
        observer=observer,
    )
    batcher.start()
    observer.watch_queue(batcher)
    servicer = EncoderServicer(embedder, batcher, settings, observer)
    handle = await start_server(
        settings,
        settings.port,
        lambda server: encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    await handle.set_serving(True)
    return handle, servicer


async def run_encoder(settings: EncoderSettings) -> None:
    telemetry = setup_telemetry(
        f"aegis-encoder-{settings.role}",
        metrics_host=settings.host,
        metrics_port=settings.metrics_port,
        attributes={"aegis.role": settings.role},
    )
    handle, servicer = await start_encoder(settings)
    info = servicer.embedder.describe()
    log.info("encoder ready: %s", info)
    # One machine-readable line so supervisors (`aegis-serve up`, tests) learn the port.
    print(
        f"READY encoder role={settings.role} address={settings.host}:{handle.port} "
        f"space={info['space_id']} metrics={telemetry.metrics_address or 'off'}",
        flush=True,
    )
    sys.stdout.flush()
    try:
        await serve_until_signal(handle, settings.shutdown_grace_s, servicer.close)
    finally:
        telemetry.shutdown()
