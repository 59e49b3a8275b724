"""A catalogue of malformed-input classes, each with the status the API documents for it.

Hypothesis (chaos/fuzz.py) explores the request space at random; this names the classes a
reviewer asks about — protobuf wire-format damage (bad varints, wrong wire types, truncation,
invalid UTF-8, unknown and nested-garbage fields, huge repeated fields) and semantic abuse
(every out-of-range field) — and sends many concrete variants of each through the real
gateway as raw bytes, so nothing on the client side tidies them up. A class passes when every
answer is one of its documented statuses.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from aegis.embed.v1 import embed_pb2

EMBED = "/aegis.embed.v1.EmbedService/Embed"
TOKENIZE = "/aegis.embed.v1.EmbedService/Tokenize"
STREAM = "/aegis.embed.v1.EmbedService/EmbedStream"
CALL_TIMEOUT_S = 20.0

OK = "OK"
INVALID = "INVALID_ARGUMENT"
TOO_BIG = "RESOURCE_EXHAUSTED"
# gRPC's own answer to an over-size message can also be the transport closing the stream.
OVERSIZE = frozenset({TOO_BIG})

Builder = Callable[[random.Random], bytes]


# ----------------------------------------------------------------- wire helpers
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def string_field(number: int, data: bytes) -> bytes:
    return tag(number, 2) + varint(len(data)) + data


def varint_field(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))


def valid_embed(rng: random.Random, n: int = 1, input_type: int = 2) -> bytes:
    req = embed_pb2.EmbedRequest(inputs=[f"{word(rng)} {word(rng)}" for _ in range(n)],
                                 input_type=input_type)  # fmt: skip
    return req.SerializeToString()


def embed_with(rng: random.Random, **fields: object) -> bytes:
    base = {"inputs": [f"{word(rng)} {word(rng)}"], "input_type": 2}
    return embed_pb2.EmbedRequest(**{**base, **fields}).SerializeToString()


# -------------------------------------------------------------------- classes
@dataclass(frozen=True)
class MalformedClass:
    name: str
    path: str
    build: Builder
    expected: frozenset[str]


BAD_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf",
            b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80"]  # fmt: skip
TRUNCATED_UTF8 = [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"]


def _c(name: str, path: str, build: Builder, *expected: str) -> MalformedClass:
    return MalformedClass(name, path, build, frozenset(expected))


# fmt: off
CLASSES: list[MalformedClass] = [
    # --- semantics (well-formed protobuf, values the API refuses)
    _c("empty inputs list", EMBED, lambda r: embed_pb2.EmbedRequest(input_type=2)
       .SerializeToString(), INVALID),
    _c("empty string input", EMBED, lambda r: embed_with(r, inputs=["ok", ""]), INVALID),
    _c("input_type unspecified", EMBED, lambda r: embed_with(r, input_type=0), INVALID),
    _c("input_type unknown enum", EMBED,
       lambda r: embed_with(r, input_type=r.randint(3, 2**31 - 1)),
       INVALID),
    _c("input_type negative enum", EMBED,
       lambda r: embed_with(r, input_type=-r.randint(1, 2**31)),
       INVALID),
    _c("dimensions not offered", EMBED,
       lambda r: embed_with(r, dimensions=r.choice([1, 7, 100, 700])),
       INVALID),
    _c("dimensions above native", EMBED,
       lambda r: embed_with(r, dimensions=r.randint(769, 2**32 - 1)),
       INVALID),
    _c("encoding unknown enum", EMBED, lambda r: embed_with(r, encoding=r.randint(7, 2**31 - 1)),
       INVALID),
    _c("layers on a query", EMBED, lambda r: embed_with(r, input_type=1, layers=r.randint(1, 64)),
       INVALID),
    _c("layers not offered", EMBED,
       lambda r: embed_with(r, layers=r.randint(7, 2**32 - 1)), INVALID),
    _c("truncate unknown enum", EMBED, lambda r: embed_with(r, truncate=r.randint(2, 2**31 - 1)),
       INVALID),
    _c("over-long input with TRUNCATE_NONE", EMBED,
       lambda r: embed_with(r, inputs=["word " * r.randint(600, 2000)],
                            truncate=embed_pb2.TRUNCATE_NONE), INVALID),
    _c("more inputs than allowed", EMBED,
       lambda r: embed_with(r, inputs=["x"] * r.randint(2049, 5000)), INVALID),
    _c("input over the character limit", EMBED,
       lambda r: embed_with(r, inputs=["a" * (1_000_001 + r.randint(0, 1000))]), INVALID),
    _c("huge repeated field (200k inputs)", EMBED,
       lambda r: embed_with(r, inputs=["y"] * 200_000), INVALID, TOO_BIG),
    _c("message over the size limit", EMBED,
       lambda r: embed_with(r, inputs=["z" * (17 << 20)]), *OVERSIZE),
    _c("tokenize: empty inputs", TOKENIZE,
       lambda r: embed_pb2.TokenizeRequest(input_type=1).SerializeToString(), INVALID),
    _c("tokenize: unknown input_type", TOKENIZE,
       lambda r: embed_pb2.TokenizeRequest(inputs=["a"], input_type=r.randint(3, 999))
       .SerializeToString(), INVALID),
    # --- protobuf wire format
    _c("zero-length message", EMBED, lambda r: b"", INVALID),
    _c("invalid UTF-8 in a string", EMBED,
       lambda r: string_field(1, r.choice(BAD_UTF8)) + varint_field(2, 2), INVALID),
    _c("truncated UTF-8 sequence", EMBED,
       lambda r: string_field(1, b"ok" + r.choice(TRUNCATED_UTF8)) + varint_field(2, 2), INVALID),
    _c("string length past the end", EMBED,
       lambda r: tag(1, 2) + varint(r.randint(10, 2**20)) + b"short", INVALID),
    _c("truncated varint", EMBED, lambda r: valid_embed(r) + tag(3, 0) + b"\xff\xff", INVALID),
    _c("over-long varint (11 bytes)", EMBED,
       lambda r: valid_embed(r) + tag(3, 0) + b"\xff" * 10 + b"\x01", INVALID),
    _c("wrong wire type: inputs as varint", EMBED,
       lambda r: varint_field(1, r.randint(0, 2**32)) + varint_field(2, 2), INVALID),
    _c("wrong wire type: enum as bytes", EMBED,
       lambda r: string_field(1, b"text") + string_field(2, bytes([r.randint(0, 255)])), INVALID),
    _c("field number 0", EMBED, lambda r: valid_embed(r) + tag(0, 0) + b"\x01", INVALID),
    _c("end-group without start", EMBED, lambda r: valid_embed(r) + tag(7, 4), INVALID),
    _c("unterminated group", EMBED, lambda r: valid_embed(r) + tag(9, 3) + varint_field(1, 5),
       INVALID),
    _c("reserved wire types 6/7", EMBED,
       lambda r: valid_embed(r) + tag(r.randint(7, 99), r.choice([6, 7])), INVALID),
    _c("random noise", EMBED, lambda r: r.randbytes(r.randint(1, 256)), INVALID, OK),
    # proto3 semantics: unknown fields are skipped, the last scalar wins: a valid request.
    _c("unknown fields (valid otherwise)", EMBED,
       lambda r: valid_embed(r) + varint_field(r.randint(7, 10_000), r.randint(0, 2**40))
       + string_field(r.randint(7, 10_000), r.randbytes(r.randint(0, 64))), OK),
    _c("nested garbage in an unknown field", EMBED,
       lambda r: valid_embed(r) + string_field(99, string_field(1, r.randbytes(32))
                                               + tag(2, 0) + b"\xff"), OK),
    _c("duplicate scalar field (last wins)", EMBED,
       lambda r: valid_embed(r) + varint_field(2, 1), OK),
    _c("packed encoding of a scalar enum", EMBED,
       lambda r: string_field(1, b"packed") + string_field(2, varint(2)), OK, INVALID),
    # --- streams
    _c("stream: garbage frame after a valid one", STREAM,
       lambda r: r.randbytes(r.randint(1, 64)), INVALID, OK),
    _c("stream: invalid request after a valid one", STREAM,
       lambda r: embed_with(r, dimensions=5), INVALID),
    _c("stream: invalid UTF-8 frame", STREAM,
       lambda r: string_field(1, r.choice(BAD_UTF8)) + varint_field(2, 1), INVALID),
]
# fmt: on


@dataclass
class ClassTally:
    sent: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.unexpected == 0


def _stream_status(channel: grpc.Channel, payload: bytes, rng: random.Random) -> str:
    """A valid frame then the malformed one on one EmbedStream: an undecodable frame ends the
    stream with INVALID_ARGUMENT (gateway/safe_decoding.py); a decodable but invalid one is
    answered in-stream with its error. Returns that status's name (OK if none)."""
    frames = [valid_embed(rng), payload]
    try:
        for raw in channel.stream_stream(STREAM)(iter(frames), timeout=CALL_TIMEOUT_S):
            resp = embed_pb2.EmbedResponse.FromString(raw)
            if resp.HasField("error"):
                return status_name(resp.error.code)
    except grpc.RpcError as exc:
        return exc.code().name
    return OK


def status_name(value: int) -> str:
    """The name of a numeric gRPC status (as EmbedStream's in-stream errors carry them)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return "UNKNOWN"


def run_classes(address: str, per_class: int, seed: int = 0) -> dict[str, ClassTally]:
    """`per_class` variants of every class; {class name: its tally}."""
    rng = random.Random(seed)
    tallies = {c.name: ClassTally() for c in CLASSES}
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(address, options=options) as channel:
        for cls in CLASSES:
            t = tallies[cls.name]
            # Over-size messages are costly to build and send: a few are enough.
            n = min(per_class, 3) if cls.expected == OVERSIZE or "200k" in cls.name else per_class
            for _ in range(n):
                payload = cls.build(rng)
                t.sent += 1
                try:
                    if cls.path == STREAM:
                        got = _stream_status(channel, payload, rng)
                    else:
                        channel.unary_unary(cls.path)(payload, timeout=CALL_TIMEOUT_S)
                        got = OK
                except grpc.RpcError as exc:
                    got = exc.code().name
                t.codes[got] += 1
                if got not in cls.expected:
                    t.unexpected += 1
                    if len(t.examples) < 5:
                        t.examples.append(f"{got}: {payload[:80]!r}")
    return tallies
