"""Run an encoder pool replica: load the model, start batching, serve gRPC until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from aegis.encoder.v1 import encoder_pb2_grpc
from aegis_serve import PROCESS_START
from aegis_serve.common.server import ServerHandle, serve_until_signal, start_server
from aegis_serve.encoder.batching import Batcher
from aegis_serve.encoder.core import Encoder, warm_up
from aegis_serve.encoder.observe import EncoderObserver
from aegis_serve.encoder.service import SERVICE, EncoderServicer
from aegis_serve.models.embedder import Embedder
from aegis_serve.protocol import ready_line
from aegis_serve.settings import EncoderSettings
from aegis_serve.telemetry.providers import setup_telemetry

log = logging.getLogger(__name__)


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


async def build_encoder(settings: EncoderSettings, embedder: Embedder | None = None) -> Encoder:
    """The encoder core with its batcher running on this event loop (the model loaded and
    warmed up off the loop unless given). An encoder process serves it over gRPC; the
    gateway's embedded query pool (gateway/embedded.py) calls it in-process."""
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
    return Encoder(embedder, batcher, settings, observer)


async def start_encoder(
    settings: EncoderSettings, embedder: Embedder | None = None
) -> tuple[ServerHandle, Encoder]:
    """Start a replica on settings.port (0 = ephemeral) and mark it SERVING."""
    encoder = await build_encoder(settings, embedder)
    servicer = EncoderServicer(encoder)
    handle = await start_server(
        settings,
        settings.port,
        lambda server: encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, server),
        [SERVICE],
    )
    await handle.set_serving(True)
    return handle, encoder


async def run_encoder(settings: EncoderSettings) -> None:
    telemetry = setup_telemetry(
        f"aegis-encoder-{settings.role}",
        metrics_host=settings.host,
        metrics_port=settings.metrics_port,
        attributes={"aegis.role": settings.role},
    )
    handle, encoder = await start_encoder(settings)
    info = encoder.embedder.describe()
    address = f"{settings.host}:{handle.port}"
    # The one start line a person reads: what was loaded, from where, how it runs, how long.
    log.info(
        "%s encoder ready in %.1f s: %s (space %s, %s dims) from %s on %s/%s, %s backend, "
        "threads=%s; listening on %s (%s); telemetry %s",
        settings.role, time.monotonic() - PROCESS_START, info["model"], info["space_id"],
        info["dimensions"], settings.model, info["device"], info["dtype"], info["backend"],
        info["threads"], address, "tls" if handle.tls else "plaintext", telemetry.short,
    )  # fmt: skip
    # One machine-readable line so supervisors (`aegis-serve up`, tests) learn the port.
    metrics = telemetry.metrics_address or "off"
    print(ready_line("encoder", role=settings.role, address=address, space=info["space_id"],
                     metrics=metrics), flush=True)  # fmt: skip
    try:
        await serve_until_signal(handle, settings.shutdown_grace_s, encoder.close)
    finally:
        telemetry.shutdown()
