"""The encoder's core: one replica's policy, apart from gRPC plumbing.

`Encoder` holds a model, its role and its batcher, and decides what a call may ask for:
which texts it accepts, which prompt a text gets, how long a text may be, how many tokens a
call may hold, when a queue is full or a deadline has passed. It mirrors the gateway's
`Gateway`: the servicer (`encoder/service.py`) only hands requests to it, and the RPC
boundary (`common/boundary.py`) turns what it raises into statuses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import grpc
import numpy as np
from opentelemetry import trace

from aegis.encoder.v1 import encoder_pb2
from aegis_serve.common.errors import ServiceError, invalid
from aegis_serve.encoder.batching import Batcher, BatchFailed, DeadlineExpired, QueueFull
from aegis_serve.encoder.observe import EncoderObserver
from aegis_serve.encoder.result import Encoded
from aegis_serve.models.embedder import Embedder, TokenizedText
from aegis_serve.protocol import NO_PROMPT, request_token_budget, retry_after
from aegis_serve.settings import EncoderSettings
from aegis_serve.telemetry.rpc import span

log = logging.getLogger(__name__)

# Above this many characters, tokenize on a worker thread so the event loop stays free.
_INLINE_TOKENIZE_CHARS = 20_000


class Encoder:
    """One replica of a pool: a model, a role and a batcher."""

    def __init__(
        self,
        embedder: Embedder,
        batcher: Batcher,
        settings: EncoderSettings,
        observer: EncoderObserver | None = None,
    ) -> None:
        self.embedder = embedder
        self.batcher = batcher
        self.settings = settings
        self.role = settings.role
        self.observer = observer or EncoderObserver(settings.role)
        # Per-text cap: the operator's, never above what the model can take.
        self.max_input_tokens = min(
            settings.max_input_tokens or embedder.max_tokens, embedder.max_tokens
        )
        self.info = self._build_info()

    # ------------------------------------------------------------- policy
    def default_prompt_name(self) -> str:
        prompts = self.embedder.prompts
        if self.role in prompts:
            return self.role
        return self.embedder.cfg.default_prompt_name or ""

    def resolve_prompt(self, name: str) -> str:
        if name == NO_PROMPT:
            return ""
        name = name or self.default_prompt_name()
        try:
            return self.embedder.prompt_for(name)
        except KeyError:
            known = sorted(self.embedder.prompts) or ["(none)"]
            raise invalid(
                f"prompt_name {name!r} is not defined by this model; known: {known}"
            ) from None

    def _check_texts(self, texts: list[str]) -> None:
        if not texts:
            raise invalid("texts must not be empty")
        limit = self.settings.max_texts_per_request
        if len(texts) > limit:
            raise invalid(f"{len(texts)} texts in one call; the limit is {limit}")
        for i, text in enumerate(texts):
            if not text:
                raise invalid(f"texts[{i}] is empty")

    async def _tokenize(self, texts: list[str], prompt: str) -> list[TokenizedText]:
        if sum(map(len, texts)) > _INLINE_TOKENIZE_CHARS:
            return await asyncio.to_thread(
                self.embedder.tokenize, texts, prompt, self.max_input_tokens
            )
        return self.embedder.tokenize(texts, prompt, self.max_input_tokens)

    def _build_info(self) -> encoder_pb2.GetInfoResponse:
        e = self.embedder
        calibration = [
            encoder_pb2.CalibrationRanges(
                dimensions=dim, minimum=ranges[0].tolist(), maximum=ranges[1].tolist()
            )
            for dim, ranges in sorted(e.space.calibration.items(), reverse=True)
        ]
        return encoder_pb2.GetInfoResponse(
            model=e.space.model_id,
            space_id=e.space.space_id,
            dimensions=e.dim,
            matryoshka_dimensions=list(e.space.matryoshka_dims),
            layer_options=list(e.space.layer_options),
            max_input_tokens=self.max_input_tokens,
            device=e.device_label,
            dtype=e.dtype_name,
            role=self.role,
            prompts=e.prompts,
            calibration=calibration,
            max_batch_texts=self.settings.max_texts_per_request,
            canaries=e.space.canaries.to_proto() if e.space.canaries else None,
        )

    async def encode(
        self,
        request: encoder_pb2.EncodeRequest,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
        time_remaining: float | None = None,
    ) -> encoder_pb2.EncodeResponse:
        """`embed`, as the wire response (the matrix as raw float32 bytes)."""
        return (await self.embed(request, metadata, time_remaining)).to_response()

    async def embed(
        self,
        request: encoder_pb2.EncodeRequest,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
        time_remaining: float | None = None,
    ) -> Encoded:
        """Embed `request.texts` through the batcher; raises ServiceError for what it refuses.

        The gateway's embedded query pool calls this directly (no serialization); the
        servicer calls `encode`."""
        texts = list(request.texts)
        self._check_texts(texts)
        layers = request.layers
        if layers and layers not in self.embedder.space.layer_options:
            raise invalid(
                f"layers={layers} is not offered by {self.embedder.space.model_id}; "
                f"choose one of {list(self.embedder.space.layer_options)} (0 = full depth)"
            )
        prompt = self.resolve_prompt(request.prompt_name)
        t0 = time.perf_counter_ns()
        with span("tokenize", **{"aegis.texts": len(texts)}) as tok_span:
            items = await self._tokenize(texts, prompt)
            token_counts = [len(it.ids) for it in items]
            tok_span.set_attribute("aegis.tokens", sum(token_counts))
        tokenization_ns = time.perf_counter_ns() - t0
        if request.reject_overlong:
            for i, it in enumerate(items):
                if it.truncated:
                    raise invalid(
                        f"inputs[{i}] has {it.original_tokens} tokens, more than the "
                        f"limit of {self.max_input_tokens}; shorten it or use TRUNCATE_END"
                    )
        budget = request_token_budget(self.settings.max_request_tokens, metadata)
        total = sum(len(it.ids) for it in items)
        if budget and total > budget:
            raise invalid(
                f"inputs have {total} tokens in total; the limit is {budget} tokens per "
                "request (split it into smaller requests)"
            )
        deadline = None
        if time_remaining is not None:
            deadline = asyncio.get_running_loop().time() + time_remaining
        try:
            tag = trace.get_current_span().get_span_context()
            job = await self.batcher.submit(items, layers, deadline, tag)
        except QueueFull as exc:
            raise ServiceError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), retry_after()
            ) from None
        except DeadlineExpired as exc:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from None
        except BatchFailed as exc:
            raise ServiceError(grpc.StatusCode.INTERNAL, f"model failed: {exc}") from None
        assert job.rows is not None
        self.observer.on_done(job, sum(token_counts))
        return Encoded(
            matrix=job.rows,
            token_counts=token_counts,
            queue_ns=job.queue_ns,
            tokenization_ns=tokenization_ns,
            inference_ns=job.inference_ns,
            model=self.embedder.space.model_id,
            layers=layers or self.embedder.num_layers,
        )

    async def tokenize_texts(
        self, request: encoder_pb2.TokenizeRequest
    ) -> encoder_pb2.TokenizeResponse:
        """Token ids, strings and offsets of each text, with the routed prompt."""
        texts = list(request.texts)
        self._check_texts(texts)
        prompt = self.resolve_prompt(request.prompt_name)
        details = await asyncio.to_thread(self.embedder.token_details, texts, prompt)
        return self._tokenize_response(details)

    def _tokenize_response(self, details: list) -> encoder_pb2.TokenizeResponse:
        limit = self.max_input_tokens
        return encoder_pb2.TokenizeResponse(
            texts=[
                encoder_pb2.TokenizedText(
                    tokens=[
                        encoder_pb2.Token(
                            id=t.id, text=t.text, start=t.start, stop=t.stop, special=t.special
                        )
                        for t in row
                    ],
                    exceeds_max_tokens=len(row) > limit,
                )
                for row in details
            ],
            max_input_tokens=limit,
            model=self.embedder.space.model_id,
        )

    async def close(self) -> None:
        """Fail what is still queued, stop the model thread, stop reporting queue depth."""
        await self.batcher.close()
        self.observer.close()


def warm_up(embedder: Embedder) -> np.ndarray:
    """One forward per depth so the first real request does not pay for lazy init."""
    items = embedder.tokenize(["warm up"])
    out = None
    for layers in embedder.space.layer_options:
        out = embedder.forward(embedder.collate(items), layers)
    assert out is not None
    return out
