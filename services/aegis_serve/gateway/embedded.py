"""The embedded query pool: the query model inside the gateway process (`--query embedded`).

An `EmbeddedReplica` is a pool replica (gateway/pools.py) whose calls go straight to an
encoder core (`Encoder` + `Batcher`, the very objects an encoder process serves with, built
from the same settings), so a query costs no gRPC hop and its float matrix is never
serialized: the batcher's rows reach the gateway's shaping as an array (`Encoded`). It keeps
the remote replica's contract: what the core refuses comes out as the same `ServiceError`
(status, message, back-off trailer), the call's deadline bounds it (texts still queued when it
passes are dropped, as in an encoder process), a cancelled call's texts never reach the model,
and its `GetInfo` is what a remote query encoder would declare, so the gateway's space check
refuses a mis-declared embedded model like a remote one. Remote query pools stay the default:
they scale on their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import grpc

from aegis.encoder.v1 import encoder_pb2
from aegis_serve.common.errors import ServiceError
from aegis_serve.encoder.core import Encoder
from aegis_serve.encoder.result import Encoded
from aegis_serve.encoder.server import build_encoder
from aegis_serve.gateway.pools import Replica, ReplicaDown
from aegis_serve.models.embedder import Embedder
from aegis_serve.settings import EMBEDDED, GatewaySettings, resolve_backend

log = logging.getLogger(__name__)


class EmbeddedReplica(Replica):
    """A query pool replica running in this process (target `embedded`)."""

    kind = EMBEDDED

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(EMBEDDED)
        self.encoder = encoder
        self._closed = False

    async def check(self, timeout: float) -> encoder_pb2.GetInfoResponse:
        if self._closed:
            raise ReplicaDown("embedded encoder closed")
        if not self.encoder.batcher.running:
            raise ReplicaDown("embedded encoder's batching loop is not running")
        return self.encoder.info

    async def encode(
        self,
        request: encoder_pb2.EncodeRequest,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> Encoded:
        if self._closed:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, "embedded encoder closed")
        try:
            # Same bound as a remote call's gRPC deadline: on expiry the call is cancelled,
            # so its texts still queued are dropped before the next batch.
            return await asyncio.wait_for(
                self.encoder.embed(request, metadata, time_remaining=timeout), timeout
            )
        except TimeoutError:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    async def tokenize(
        self, request: encoder_pb2.TokenizeRequest, timeout: float
    ) -> encoder_pb2.TokenizeResponse:
        if self._closed:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, "embedded encoder closed")
        try:
            return await asyncio.wait_for(self.encoder.tokenize_texts(request), timeout)
        except TimeoutError:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.healthy, self.problem = False, "closed"
            await self.encoder.close()


async def start_embedded_query(
    settings: GatewaySettings, embedder: Embedder | None = None
) -> EmbeddedReplica:
    """The embedded query replica: resolve and load `--query-model` off the event loop (or
    take a loaded `embedder`), then start its batcher on this loop."""
    if embedder is None:
        from aegis_serve.models.resolve import resolve_model

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = str(await asyncio.to_thread(resolve_model, settings.query_model))
    else:
        model = str(embedder.cfg.root)
    backend = resolve_backend(settings.query_backend) if embedder is None else embedder.backend
    encoder = await build_encoder(settings.embedded_encoder_settings(model, backend), embedder)
    log.info("embedded query pool ready: %s", encoder.embedder.describe())
    return EmbeddedReplica(encoder)
