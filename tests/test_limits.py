"""Limits, deadlines and overload through the real gateway and encoders (MiniLM on CPU)."""

from __future__ import annotations

import threading

import grpc
import pytest

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from conftest import rpc_error, wait_until

DOC = embed_pb2.INPUT_TYPE_DOCUMENT
LONG = "token " * 250  # ~252 tokens: one slow-ish forward each with max_batch_texts=1


def _stub(gw) -> embed_pb2_grpc.EmbedServiceStub:
    return embed_pb2_grpc.EmbedServiceStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))


def _busy(address: str, n: int) -> grpc.Future:
    """Occupy an encoder's model with `n` long texts sent straight to it."""
    stub = encoder_pb2_grpc.EncoderServiceStub(grpc.insecure_channel(address))
    return stub.Encode.future(encoder_pb2.EncodeRequest(texts=[LONG] * n), timeout=120)


# ---------------------------------------------------------------- tokens
def test_max_input_tokens_caps_below_the_models_limit(stack, student):
    d = stack.encoder("d", student, "document", max_input_tokens=16)
    gw = stack.gateway([d], [d])
    stub = _stub(gw)
    long = embed_pb2.EmbedRequest(inputs=["word " * 40], input_type=DOC)
    resp = stub.Embed(long, timeout=30)
    assert resp.usage.input_tokens == 16
    assert stub.GetInfo(embed_pb2.GetInfoRequest(), timeout=5).max_input_tokens == 16
    long.truncate = embed_pb2.TRUNCATE_NONE
    err = rpc_error(lambda: stub.Embed(long, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[0] has 42 tokens, more than the limit of 16" in err.details()


def test_max_request_tokens_on_the_encoder_refuses_before_the_model(stack, student):
    d = stack.encoder("d", student, "document", max_request_tokens=50)
    gw = stack.gateway([d], [d])
    batcher = stack.encoders["d"][1].batcher
    request = embed_pb2.EmbedRequest(inputs=["word " * 20] * 3, input_type=DOC)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs have 66 tokens in total; the limit is 50 tokens per request" in err.details()
    assert batcher.stats.texts == 0
    del request.inputs[1:]
    assert _stub(gw).Embed(request, timeout=30).usage.input_tokens == 22


def test_max_request_tokens_on_the_gateway_limits_the_whole_split_request(stack, student):
    d1 = stack.encoder("d1", student, "document")
    d2 = stack.encoder("d2", student, "document")
    texts = ["a b"] * 64  # 4 tokens each; the gateway sends two chunks of 32 (128 tokens)
    request = embed_pb2.EmbedRequest(inputs=texts, input_type=DOC)
    # Budget below one chunk: the encoders refuse before any model work.
    gw = stack.gateway([d1], [d1, d2], max_request_tokens=100)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the limit is 100 tokens per request" in err.details()
    assert sum(stack.encoders[n][1].batcher.stats.texts for n in ("d1", "d2")) == 0
    # Each chunk fits but the request does not: refused as a whole.
    gw = stack.gateway([d1], [d1, d2], max_request_tokens=200)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs have 256 tokens in total; the limit is 200" in err.details()
    gw = stack.gateway([d1], [d1, d2], max_request_tokens=256)
    assert _stub(gw).Embed(request, timeout=30).usage.input_tokens == 256


def test_message_over_the_size_limit_is_resource_exhausted_with_sizes(stack, student):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], max_message_bytes=64 * 1024)
    request = embed_pb2.EmbedRequest(inputs=["y" * 100_000], input_type=DOC)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in err.details() and "65536" in err.details()


# ------------------------------------------------------------- deadlines
def test_short_deadline_behind_a_busy_encoder_never_reaches_the_model(stack, student):
    d = stack.encoder("d", student, "document", max_batch_texts=1)
    gw = stack.gateway([d], [d])
    batcher = stack.encoders["d"][1].batcher
    busy = _busy(d, 24)
    assert wait_until(lambda: batcher.stats.batches >= 1, timeout=30)
    request = embed_pb2.EmbedRequest(inputs=["late one", "late two", "late three"], input_type=DOC)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=0.3))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert busy.result(120).rows == 24
    assert wait_until(lambda: batcher.stats.dropped_texts == 3, timeout=10)
    assert batcher.stats.texts == 24  # only the busy texts went through the model


# -------------------------------------------------------------- overload
@pytest.mark.parametrize(
    ("limit", "needle"),
    [
        ({"max_inflight_requests": 1}, "limit of 1 requests in flight"),
        ({"max_inflight_inputs": 10}, "limit of 10 inputs in flight"),
    ],
)
def test_gateway_in_flight_bound_sheds_load(stack, student, limit, needle):
    d = stack.encoder("d", student, "document", max_batch_texts=1)
    gw = stack.gateway([d], [d], **limit)
    stub = _stub(gw)
    first = stub.Embed.future(embed_pb2.EmbedRequest(inputs=[LONG] * 16, input_type=DOC), 120)
    assert wait_until(lambda: gw.gateway.admission.requests == 1, timeout=10)
    request = embed_pb2.EmbedRequest(inputs=["one more"], input_type=DOC)
    err = rpc_error(lambda: stub.Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and needle in err.details()
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "100"
    assert len(first.result(120).embeddings) == 16
    assert len(stub.Embed(request, timeout=30).embeddings) == 1
    assert gw.gateway.admission.requests == 0 and gw.gateway.admission.inputs == 0


def test_embed_streams_over_the_limit_are_refused(stack, student):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], max_concurrent_streams=1)
    stub = _stub(gw)
    release = threading.Event()
    request = embed_pb2.EmbedRequest(inputs=["streamed"], input_type=DOC)

    def held_open():
        yield request
        release.wait(30)

    first = stub.EmbedStream(held_open(), timeout=60)
    assert wait_until(lambda: gw.gateway.admission.streams == 1, timeout=10)
    err = rpc_error(lambda: list(stub.EmbedStream(iter([request]), timeout=10)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 1" in err.details()
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "100"
    release.set()
    assert len(list(first)) == 1
    assert wait_until(lambda: gw.gateway.admission.streams == 0, timeout=10)
    assert len(list(stub.EmbedStream(iter([request]), timeout=30))) == 1


def test_full_replica_request_lands_on_the_other_replica(stack, student):
    full = stack.encoder("full", student, "document", max_queue_texts=1)
    free = stack.encoder("free", student, "document")
    gw = stack.gateway([free], [full, free])
    stub = _stub(gw)
    request = embed_pb2.EmbedRequest(inputs=["two", "texts"], input_type=DOC)
    for _ in range(4):  # round robin: half of these try the full replica first
        assert len(stub.Embed(request, timeout=30).embeddings) == 2
    assert stack.encoders["full"][1].batcher.stats.texts == 0
    assert stack.encoders["free"][1].batcher.stats.texts == 8
    assert gw.gateway.document.healthy == gw.gateway.document.replicas  # full is not down


def test_every_replica_full_passes_retry_after_to_the_caller(stack, student):
    a = stack.encoder("a", student, "document", max_queue_texts=1)
    b = stack.encoder("b", student, "document", max_queue_texts=1)
    gw = stack.gateway([a], [a, b])
    request = embed_pb2.EmbedRequest(inputs=["two", "texts"], input_type=DOC)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in err.details()
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "100"
