"""The gateway's core: routing, chunking over replicas, vector shaping, apart from gRPC.

`Gateway` holds the two pools and the space state (gateway/space.py) and answers validated
requests: route by input type (query → query pool, falling back to the document pool when the
query pool is down; documents never go to the query pool), spread large requests over healthy
replicas, then truncate → renormalize → quantize → pack. The servicer (gateway/service.py)
only hands requests to it; the RPC boundary (common/boundary.py) maps what it raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from opentelemetry import trace

from aegis.embed.v1 import embed_pb2
from aegis.encoder.v1 import encoder_pb2
from aegis_serve.common.errors import ServiceError, invalid
from aegis_serve.common.watched_files import WatchedFiles
from aegis_serve.encoder.result import Encoded
from aegis_serve.gateway.admission import Admission
from aegis_serve.gateway.canary import CanaryGuard
from aegis_serve.gateway.pools import Pool, PoolUnavailable, RemoteReplica
from aegis_serve.gateway.quantize import (
    ENCODING_VALUES,
    encode_rows,
    quantize,
    truncate_and_renormalize,
)
from aegis_serve.gateway.space import SpaceState
from aegis_serve.gateway.validation import (
    EmbedPlan,
    Limits,
    check_inputs,
    check_space_options,
    role_of,
)
from aegis_serve.protocol import NO_PROMPT, REQUEST_TOKENS_KEY
from aegis_serve.settings import GatewaySettings
from aegis_serve.telemetry.instruments import CounterCell, gateway_instruments
from aegis_serve.telemetry.rpc import span

log = logging.getLogger(__name__)

MIN_CHUNK_TEXTS = 32
_INPUT_INDEX = re.compile(r"inputs\[(\d+)\]")


@dataclass(frozen=True)
class Route:
    """Where a request goes and how it is labelled."""

    pool: Pool
    prompt_name: str
    fallback: bool


class Gateway:
    """The two pools, the space check and the routing rules."""

    def __init__(self, settings: GatewaySettings, query: Pool, document: Pool) -> None:
        self.settings = settings
        self.query = query
        self.document = document
        self.space = SpaceState(query, document)
        self.canaries = CanaryGuard(settings, document)
        # Watched pool TLS files (gateway/tls.py); None = plaintext pools.
        self.pool_tls: WatchedFiles[grpc.ChannelCredentials] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        for pool in self.pools:
            pool.hold = self.canaries.hold
        self.limits = Limits(settings.max_inputs, settings.max_input_chars)
        self.metrics = gateway_instruments()
        self._pool_counters: dict[str, tuple[CounterCell, CounterCell]] = {}
        self.admission = Admission(
            settings.max_inflight_requests,
            settings.max_inflight_inputs,
            settings.max_concurrent_streams,
        )

    @property
    def pools(self) -> tuple[Pool, Pool]:
        return self.query, self.document

    async def refresh(self) -> None:
        """Probe every replica, check by vectors those that joined or are due (the document
        pool first: it defines the space's reference canaries), then compare the declared
        spaces."""
        self.rotate_pool_tls()
        await asyncio.gather(self.query.probe_all(), self.document.probe_all())
        await self.canaries.check_pool(self.document)
        await self.canaries.check_pool(self.query)
        self.space.check()

    def rotate_pool_tls(self) -> None:
        """When the pool TLS files changed on disk: new calls go over new channels made with
        them; the old channels close once their calls finish (up to the encoder timeout)."""
        creds = self.pool_tls.poll() if self.pool_tls is not None else None
        if creds is None:
            return
        remote = [r for pool in self.pools for r in pool.replicas if isinstance(r, RemoteReplica)]
        for replica in remote:
            old = replica.reconnect(creds)
            task = asyncio.get_running_loop().create_task(
                old.close(grace=self.settings.encoder_timeout_s)
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        log.info("%d pool replica channels reconnected with the new TLS files", len(remote))

    def drop_replaced_channels(self) -> None:
        """At shutdown: stop waiting for channels a TLS rotation replaced."""
        for task in list(self._closing):
            task.cancel()

    @property
    def serving(self) -> bool:
        return self.space.serving

    @property
    def problem(self) -> str:
        return self.space.problem

    def route(self, role: str) -> Route:
        if self.space.mismatch:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, self.space.problem)
        if role == "document":
            return Route(self.document, "", False)
        if self.query.healthy or not self.settings.query_fallback:
            return Route(self.query, "", False)
        return self.fallback_route()

    def fallback_route(self) -> Route:
        info = self.document.info
        prompt = "query" if info is not None and "query" in info.prompts else NO_PROMPT
        return Route(self.document, prompt, True)

    def space_options(self, route: Route) -> tuple[list[int], list[int]]:
        options = self.space.options(route.pool)
        if options is None:
            raise self.unavailable(route.pool, "; it has not answered yet")
        return options

    def unavailable(self, pool: Pool, detail: str = "") -> ServiceError:
        problems = "; ".join(f"{r.target}: {r.problem or 'failed'}" for r in pool.replicas)
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            f"{pool.role} pool has no healthy replica ({problems}){detail}",
        )

    # --------------------------------------------------------------- embed
    async def embed(
        self, plan: EmbedPlan, metadata: Sequence[tuple[str, str]], timeout: float
    ) -> embed_pb2.EmbedResponse:
        with self.admission.request(len(plan.inputs)):
            return await self._embed(plan, metadata, timeout)

    async def _embed(
        self, plan: EmbedPlan, metadata: Sequence[tuple[str, str]], timeout: float
    ) -> embed_pb2.EmbedResponse:
        started = time.perf_counter_ns()
        budget = self.settings.max_request_tokens
        if budget:  # each chunk is checked against the whole budget before the model
            metadata = [*metadata, (REQUEST_TOKENS_KEY, str(budget))]
        with span("route", **{"aegis.input_type": plan.role}) as route_span:
            route = self.route(plan.role)
            dims_offered, layers_offered = self.space_options(route)
            dims = check_space_options(plan, dims_offered, layers_offered)
            route_span.set_attribute("aegis.pool", route.pool.role)
            route_span.set_attribute("aegis.healthy_replicas", len(route.pool.healthy))
        try:
            parts, route = await self._encode_with_fallback(plan, route, metadata, timeout)
        except PoolUnavailable as exc:
            raise self.unavailable(route.pool, f": {exc}") from None
        with span("postprocess", **{"aegis.dimensions": dims, "aegis.encoding": plan.encoding}):
            matrix = (
                parts[0].matrix if len(parts) == 1 else np.concatenate([p.matrix for p in parts])
            )
            if dims != matrix.shape[1]:
                matrix = truncate_and_renormalize(matrix, dims)
            quantized = quantize(matrix, plan.encoding, self.space.calibration(dims))
        tokens = [t for p in parts for t in p.token_counts]
        if budget and sum(tokens) > budget:
            raise invalid(
                f"inputs have {sum(tokens)} tokens in total; the limit is {budget} tokens per "
                "request (split it into smaller requests)"
            )
        inputs, input_tokens = self._input_counters(route.pool.role)
        inputs.add(len(tokens))
        input_tokens.add(sum(tokens))
        if route.fallback:
            self.metrics.fallbacks.add(1)
        info = route.pool.info
        resp = embed_pb2.EmbedResponse(
            dimensions=dims,
            encoding=ENCODING_VALUES[plan.encoding],
            model=parts[0].model,
            encoder=route.pool.role,
            usage=embed_pb2.Usage(input_tokens=sum(tokens), tokens_per_input=tokens),
            timing=embed_pb2.Timing(
                queue_ns=max(p.queue_ns for p in parts),
                tokenization_ns=max(p.tokenization_ns for p in parts),
                inference_ns=max(p.inference_ns for p in parts),
            ),
            fallback=route.fallback,
            space_id=info.space_id if info is not None else "",
            layers=parts[0].layers,
        )
        if plan.encoding == "float32":
            resp.embeddings.extend(embed_pb2.Embedding(values=row) for row in matrix.tolist())
        else:
            resp.embeddings.extend(embed_pb2.Embedding(data=b) for b in encode_rows(quantized))
        resp.timing.total_ns = time.perf_counter_ns() - started
        return resp

    def _input_counters(self, role: str) -> tuple[CounterCell, CounterCell]:
        """The inputs and input-token counters of a pool, bound once."""
        cells = self._pool_counters.get(role)
        if cells is None:
            labels = {"pool": role}
            cells = (self.metrics.inputs.bind(labels), self.metrics.input_tokens.bind(labels))
            self._pool_counters[role] = cells
        return cells

    async def _encode_with_fallback(
        self, plan: EmbedPlan, route: Route, metadata: Sequence[tuple[str, str]], timeout: float
    ) -> tuple[list[Encoded], Route]:
        try:
            return await self._encode(plan, route, metadata, timeout), route
        except (PoolUnavailable, ServiceError) as exc:
            retry_on_document = (
                plan.role == "query"
                and not route.fallback
                and self.settings.query_fallback
                and self.document.healthy
                and (isinstance(exc, PoolUnavailable) or exc.code == grpc.StatusCode.UNAVAILABLE)
            )
            if not retry_on_document:
                raise
            route = self.fallback_route()
            log.warning("query pool failed (%s); serving queries on the document pool", exc)
            span_now = trace.get_current_span()
            span_now.add_event("fallback to the document pool", {"reason": str(exc)[:200]})
            return await self._encode(plan, route, metadata, timeout), route

    async def _encode(
        self, plan: EmbedPlan, route: Route, metadata: Sequence[tuple[str, str]], timeout: float
    ) -> list[Encoded]:
        """One Encode per chunk, spread over healthy replicas, results in input order."""
        n_replicas = max(1, len(route.pool.healthy))
        chunk = len(plan.inputs)
        if n_replicas > 1 and chunk > MIN_CHUNK_TEXTS:
            chunk = max(MIN_CHUNK_TEXTS, math.ceil(chunk / n_replicas))
        requests = [
            encoder_pb2.EncodeRequest(
                texts=plan.inputs[i : i + chunk],
                prompt_name=route.prompt_name,
                layers=plan.layers,
                reject_overlong=plan.reject_overlong,
            )
            for i in range(0, len(plan.inputs), chunk)
        ]

        async def call(req: encoder_pb2.EncodeRequest, offset: int) -> Encoded:
            try:
                resp, _ = await route.pool.encode(req, timeout, metadata)
                return resp
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT or not offset:
                    raise
                # The encoder names indices within its chunk; callers need their own.
                message = _INPUT_INDEX.sub(
                    lambda m: f"inputs[{int(m.group(1)) + offset}]", exc.message
                )
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message) from None

        if len(requests) == 1:  # the common case: no task to create and schedule
            parts = [await call(requests[0], 0)]
        else:
            tasks = [asyncio.create_task(call(r, i * chunk)) for i, r in enumerate(requests)]
            try:
                parts = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:  # a failed chunk fails the request: free the others' slots
                    task.cancel()
                raise
        for req, part in zip(requests, parts, strict=True):
            if part.matrix.ndim != 2 or part.rows != len(req.texts):
                raise ServiceError(grpc.StatusCode.INTERNAL, "encoder returned a malformed matrix")
        return parts

    # ------------------------------------------------------------ tokenize
    async def tokenize(
        self, req: embed_pb2.TokenizeRequest, timeout: float
    ) -> embed_pb2.TokenizeResponse:
        role = role_of(req.input_type)
        inputs = list(req.inputs)
        check_inputs(inputs, self.limits)
        with self.admission.request(len(inputs)):
            return await self._tokenize(req, role, inputs, timeout)

    async def _tokenize(
        self, req: embed_pb2.TokenizeRequest, role: str, inputs: list[str], timeout: float
    ) -> embed_pb2.TokenizeResponse:
        route = self.route(role)
        prompt = route.prompt_name if req.add_prompt else NO_PROMPT
        try:
            resp = await route.pool.tokenize(
                encoder_pb2.TokenizeRequest(texts=inputs, prompt_name=prompt), timeout
            )
        except PoolUnavailable as exc:
            raise self.unavailable(route.pool, f": {exc}") from None
        return embed_pb2.TokenizeResponse(
            inputs=[
                embed_pb2.TokenizedInput(
                    tokens=[
                        embed_pb2.Token(
                            id=t.id, text=t.text, start=t.start, stop=t.stop, special=t.special
                        )
                        for t in row.tokens
                    ],
                    exceeds_max_tokens=row.exceeds_max_tokens,
                )
                for row in resp.texts
            ],
            max_input_tokens=resp.max_input_tokens,
            model=resp.model,
        )

    # ---------------------------------------------------------------- info
    def get_info(self) -> embed_pb2.GetInfoResponse:
        pools = []
        for pool in self.pools:
            info = pool.info
            pools.append(
                embed_pb2.PoolInfo(
                    role=pool.role,
                    model=info.model if info else "",
                    space_id=info.space_id if info else "",
                    replicas=[r.target for r in pool.replicas],
                    healthy_replicas=len(pool.healthy),
                    serving=bool(pool.healthy),
                    device=info.device if info else "",
                    dtype=info.dtype if info else "",
                    max_input_tokens=info.max_input_tokens if info else 0,
                    layer_options=list(info.layer_options) if info else [],
                    replica_states=[
                        embed_pb2.ReplicaState(
                            target=r.target,
                            healthy=r.healthy,
                            problem=r.problem,
                            verified=r.verified,
                        )
                        for r in pool.replicas
                    ],
                )
            )
        ref = self.space.reference
        limits = [p.max_input_tokens for p in pools if p.max_input_tokens]
        return embed_pb2.GetInfoResponse(
            space_id=ref.space_id if ref else "",
            dimensions=ref.dimensions if ref else 0,
            matryoshka_dimensions=list(ref.matryoshka_dimensions) if ref else [],
            layer_options=list(self.document.info.layer_options) if self.document.info else [],
            max_input_tokens=min(limits) if limits else 0,
            encodings=sorted(set(ENCODING_VALUES.values())),
            pools=pools,
            max_inputs_per_request=self.settings.max_inputs,
            calibrated=bool(ref and ref.calibration),
            serving=self.serving,
            problem=self.problem,
        )
