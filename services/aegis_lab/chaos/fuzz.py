"""Fuzz campaign: hypothesis-generated requests (and raw bytes) against a live gateway.

Every field of EmbedRequest is drawn, in range and out of it (open proto3 enums take any
int32), with text edge cases protobuf can carry (surrogates cannot be sent as strings; the
raw-bytes part sends their UTF-8-invalid encodings instead). An answer is acceptable when
it is a well-formed success or a defined status; UNKNOWN, INTERNAL, UNAVAILABLE or a hang
counts as a failure, and the fleet must still be alive and answering afterwards.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_lab.chaos.malformed import status_name

DEFINED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
EMBED_PATH = "/aegis.embed.v1.EmbedService/Embed"
TOKENIZE_PATH = "/aegis.embed.v1.EmbedService/Tokenize"
STREAM_PATH = "/aegis.embed.v1.EmbedService/EmbedStream"
CALL_TIMEOUT_S = 20.0

EDGE_TEXTS = [
    "", " ", "   \t\n\r ", "\x00", "a\x00b", "\u0301", "e\u0301\u0302\u0303" * 50,
    "\u202eevil\u202c", "שלום עולם", "مرحبا بالعالم", "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈" * 30, "\ufeff", "\u200b\u200c\u200d", "\uffff\ufffe", "\U0010ffff",
    "\ue000", "日本語のテキスト", "a" * 100_000, "word " * 20_000, "\n" * 5000,
]  # fmt: skip
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)

texts = st.one_of(
    st.sampled_from(EDGE_TEXTS),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
)
inputs = st.one_of(st.lists(texts, min_size=1, max_size=6), st.lists(texts, max_size=6))


def _mostly(valid: st.SearchStrategy[int], anything: st.SearchStrategy[int]) -> st.SearchStrategy:
    """Valid values 3 times in 4, so requests get past validation and reach the pools."""
    return st.one_of(valid, valid, valid, anything)


@st.composite
def embed_requests(draw: st.DrawFn) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(
        inputs=draw(inputs),
        input_type=draw(_mostly(st.sampled_from([1, 2]), INT32)),
        dimensions=draw(_mostly(st.sampled_from([0, 64, 128, 256, 384, 512, 768]), UINT32)),
        encoding=draw(_mostly(st.integers(0, 6), INT32)),
        layers=draw(_mostly(st.just(0), st.one_of(st.sampled_from([1, 3, 6]), UINT32))),
        truncate=draw(_mostly(st.sampled_from([0, 1]), INT32)),
    )


tokenize_requests = st.builds(
    embed_pb2.TokenizeRequest,
    inputs=inputs,
    input_type=_mostly(st.sampled_from([1, 2]), INT32),
    add_prompt=st.booleans(),
)

# Valid field tags with invalid UTF-8 (lone surrogates, truncated sequences), bad varints,
# unknown fields, and plain noise.
BAD_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xc3", b"\xe2\x82", b"\xf4\x90\x80\x80"]
raw_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(
        lambda bad, t: b"\x0a" + bytes([len(bad)]) + bad + b"\x10" + bytes([t]),
        st.sampled_from(BAD_UTF8),
        st.sampled_from([1, 2]),
    ),
    st.sampled_from([b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0a\xff\xff\xff\x0f",
                     b"\xf8\xff\xff\xff\x0f\x00", b"\x0a"]),
)  # fmt: skip


@dataclass
class FuzzTally:
    """Per-RPC counts: ok, defined rejections, failures (with a few examples)."""

    sent: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    malformed: int = 0  # a success whose shape does not match the request
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, what: str, example: object) -> None:
        self.failed += 1
        if len(self.examples) < 5:
            self.examples.append(f"{what}: {example!r}"[:400])

    def answer(self, call: Callable[[], Any], example: object) -> Any:
        """Run one RPC; classify its status. Returns the response, or None on an error."""
        self.sent += 1
        try:
            resp = call()
        except grpc.RpcError as exc:
            code = exc.code()
            self.codes[code.name] += 1
            if code in DEFINED:
                self.rejected += 1
            else:
                self.fail(f"{code.name} {exc.details()}", example)
            return None
        self.codes["OK"] += 1
        self.ok += 1
        return resp


def _embed_shape_ok(req: embed_pb2.EmbedRequest, resp: embed_pb2.EmbedResponse) -> bool:
    if resp.HasField("error") or len(resp.embeddings) != len(req.inputs):
        return False
    if req.dimensions and resp.dimensions != req.dimensions:
        return False
    if resp.encoding in (0, 1):
        return all(len(e.values) == resp.dimensions for e in resp.embeddings)
    return all(e.data for e in resp.embeddings)


def run_fuzz(address: str, examples: int, seed: int = 0) -> dict[str, FuzzTally]:
    """The campaign: `examples` draws per RPC kind (hypothesis, reproducible from `seed`)."""
    tallies = {k: FuzzTally() for k in ("Embed", "Tokenize", "EmbedStream", "raw bytes")}
    conf = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[p for p in settings.default.phases if p.name != "shrink"],
    )
    with grpc.insecure_channel(address) as channel:
        stub = embed_pb2_grpc.EmbedServiceStub(channel)

        @conf
        @hypothesis_seed(seed)
        @given(embed_requests())
        def embed(req: embed_pb2.EmbedRequest) -> None:
            t = tallies["Embed"]
            resp = t.answer(lambda: stub.Embed(req, timeout=CALL_TIMEOUT_S), req)
            if resp is not None and not _embed_shape_ok(req, resp):
                t.malformed += 1
                t.fail("malformed success", req)

        @conf
        @hypothesis_seed(seed)
        @given(tokenize_requests)
        def tokenize(req: embed_pb2.TokenizeRequest) -> None:
            t = tallies["Tokenize"]
            resp = t.answer(lambda: stub.Tokenize(req, timeout=CALL_TIMEOUT_S), req)
            if resp is not None and len(resp.inputs) != len(req.inputs):
                t.malformed += 1
                t.fail("malformed success", req)

        @conf
        @hypothesis_seed(seed)
        @given(st.lists(embed_requests(), min_size=1, max_size=4))
        def stream(reqs: list[embed_pb2.EmbedRequest]) -> None:
            t = tallies["EmbedStream"]
            call = lambda: list(stub.EmbedStream(iter(reqs), timeout=CALL_TIMEOUT_S))  # noqa: E731
            resps = t.answer(call, reqs)
            if resps is None:
                return
            bad = len(resps) != len(reqs)
            for req, resp in zip(reqs, resps, strict=False):
                if resp.HasField("error"):
                    code = grpc.StatusCode.__members__.get(status_name(resp.error.code))
                    bad |= code not in DEFINED
                else:
                    bad |= not _embed_shape_ok(req, resp)
            if bad:
                t.malformed += 1
                t.fail("bad stream answer", [(r.error.code, r.error.message) for r in resps])

        raw_paths = [EMBED_PATH, TOKENIZE_PATH]

        @conf
        @hypothesis_seed(seed)
        @given(raw_bytes, st.sampled_from([*raw_paths, STREAM_PATH]))
        def raw(payload: bytes, path: str) -> None:
            t = tallies["raw bytes"]
            if path == STREAM_PATH:
                method = channel.stream_stream(path)  # no serializers: bytes on the wire
                t.answer(lambda: list(method(iter([payload]), timeout=CALL_TIMEOUT_S)), payload)
            else:
                method = channel.unary_unary(path)
                t.answer(lambda: method(payload, timeout=CALL_TIMEOUT_S), payload)

        for campaign in (embed, tokenize, stream, raw):
            campaign()
    return tallies
