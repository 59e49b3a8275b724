"""The embedded query pool (`--query embedded`): the query model inside the gateway process.

Real gateways on 127.0.0.1 with the real client: one with the embedded query pool, and, for
reference, one with a remote query encoder of the same model; both in front of a real
document encoder. The embedded pool must answer exactly as the remote one does (vectors,
labels, validation, deadlines, fallback, space check), and `aegis-serve up --query-mode
embedded` must start and serve.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_client import EmbedClient
from aegis_serve.models.embedder import Embedder
from aegis_serve.settings import GatewaySettings
from conftest import LoopThread, ServiceProcess, make_space_variant, rpc_error, wait_until

TEXTS = [
    "What is the capital of France?",
    "how do plants make food",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Ünïcödé façade — naïve café 東京 🚀",
]
QUERY = embed_pb2.INPUT_TYPE_QUERY
LONG = "token " * 250  # ~252 tokens: one slow-ish forward each with query_max_batch_texts=1


@pytest.fixture
def embedded_gateway(loop_thread: LoopThread) -> Iterator[Callable[..., Any]]:
    """Start gateways whose query pool is `embedded` (the given loaded model), torn down at
    the end (their embedded encoders close with them)."""
    from aegis_serve.gateway.server import start_gateway

    runtimes: list[Any] = []

    def start(document: list[str], embedder: Embedder, **overrides: Any) -> Any:
        overrides.setdefault("health_interval_s", 0.5)
        settings = GatewaySettings(
            query=["embedded"], document=document, port=0, shutdown_grace_s=1, **overrides
        )
        runtime = loop_thread.run(start_gateway(settings, query_embedder=embedder))
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in runtimes:
        loop_thread.run(runtime.handle.server.stop(0))
        loop_thread.run(runtime.close())


def _client(gw: Any, timeout: float = 60) -> EmbedClient:
    return EmbedClient(f"127.0.0.1:{gw.port}", timeout=timeout)


def _stub(gw: Any) -> embed_pb2_grpc.EmbedServiceStub:
    return embed_pb2_grpc.EmbedServiceStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))


def _replica(gw: Any) -> Any:
    (replica,) = gw.gateway.query.replicas
    return replica


@pytest.fixture
def pair(stack, student, embedded_gateway):
    """(embedded gateway, remote gateway), both over one document encoder of the same model."""
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    return embedded_gateway([d], student), stack.gateway([q], [d])


def test_embedded_queries_equal_the_remote_pools(pair, student):
    embedded, remote = pair
    with _client(embedded) as e, _client(remote) as r:
        got, want = e.embed(TEXTS, "query"), r.embed(TEXTS, "query")
        assert got.encoder == "query" and not got.fallback
        np.testing.assert_array_equal(got.embeddings, want.embeddings)
        np.testing.assert_allclose(got.embeddings, student.embed(TEXTS), atol=1e-5)
        assert list(got.raw.usage.tokens_per_input) == list(want.raw.usage.tokens_per_input)
        assert got.model == want.model and got.raw.space_id == want.raw.space_id
        assert got.raw.timing.total_ns >= got.raw.timing.inference_ns > 0
        for dims in (0, 128):
            for encoding in ("float16", "int8", "uint8", "ubinary", "binary"):
                a = e.embed(TEXTS, "query", dimensions=dims, encoding=encoding)
                b = r.embed(TEXTS, "query", dimensions=dims, encoding=encoding)
                assert a.dimensions == b.dimensions == (dims or 384)
                assert a.embeddings.tobytes() == b.embeddings.tobytes(), (dims, encoding)
        # Documents still go to the document pool.
        doc = e.embed(TEXTS[:2], "document")
        assert doc.encoder == "document" and not doc.fallback
        assert _replica(embedded).encoder.batcher.stats.texts == len(TEXTS) * 11


def test_info_and_health_show_the_embedded_replica(pair):
    embedded, _ = pair
    with _client(embedded) as client:
        info = client.info()
        query, document = info.pools
        assert query.role == "query" and list(query.replicas) == ["embedded"]
        assert query.healthy_replicas == 1 and query.serving and query.device == "cpu"
        assert query.space_id == document.space_id == info.space_id and info.serving
        health = health_pb2_grpc.HealthStub(client.channel)
        for service in ("", "aegis.pool.query"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("request_kwargs", "needle"),
    [
        ({"inputs": ["ok", "", "ok"], "input_type": QUERY}, "inputs[1] is empty"),
        ({"inputs": ["x"], "input_type": QUERY, "dimensions": 100}, "dimensions=100 is not"),
        ({"inputs": ["x"], "input_type": QUERY, "layers": 3}, "layers applies to"),
        ({"inputs": ["long " * 600], "input_type": QUERY, "truncate": 1}, "has 602 tokens"),
    ],
)
def test_validation_is_the_same_as_remote(pair, request_kwargs, needle):
    embedded, remote = pair
    request = embed_pb2.EmbedRequest(**request_kwargs)
    got = rpc_error(lambda: _stub(embedded).Embed(request, timeout=30))
    want = rpc_error(lambda: _stub(remote).Embed(request, timeout=30))
    assert got.code() == want.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in got.details() and got.details() == want.details()


def test_tokenize_is_the_same_as_remote(pair):
    embedded, remote = pair
    request = embed_pb2.TokenizeRequest(inputs=TEXTS[:2], input_type=QUERY, add_prompt=True)
    assert _stub(embedded).Tokenize(request, timeout=30) == _stub(remote).Tokenize(
        request, timeout=30
    )


def test_deadline_drops_queued_texts_before_the_model(stack, student, embedded_gateway):
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], student, query_max_batch_texts=1)
    batcher = _replica(gw).encoder.batcher
    busy = _stub(gw).Embed.future(
        embed_pb2.EmbedRequest(inputs=[LONG] * 24, input_type=QUERY), timeout=120
    )
    assert wait_until(lambda: batcher.stats.batches >= 1, timeout=30)
    late = embed_pb2.EmbedRequest(inputs=["late one", "late two", "late three"], input_type=QUERY)
    err = rpc_error(lambda: _stub(gw).Embed(late, timeout=0.3))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(busy.result(120).embeddings) == 24
    assert wait_until(lambda: batcher.stats.dropped_texts == 3, timeout=10)
    assert batcher.stats.texts == 24  # only the busy texts went through the model


def test_full_embedded_queue_is_resource_exhausted_with_retry_after(
    stack, student, embedded_gateway
):
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], student, query_max_queue_texts=1)
    request = embed_pb2.EmbedRequest(inputs=["two", "texts"], input_type=QUERY)
    err = rpc_error(lambda: _stub(gw).Embed(request, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in err.details()
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "100"
    assert _replica(gw).healthy  # full is not down: no fallback, the caller backs off


def test_falls_back_to_the_document_pool_when_the_embedded_pool_is_down(
    stack, student, embedded_gateway, loop_thread
):
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], student)
    closed = embedded_gateway([d], student, query_fallback=False)
    with _client(gw) as client, _client(closed, timeout=30) as no_fallback:
        before = client.embed(TEXTS, "query")
        for runtime in (gw, closed):
            loop_thread.run(_replica(runtime).close())
        after = client.embed(TEXTS, "query")
        assert after.encoder == "document" and after.fallback
        np.testing.assert_allclose(after.embeddings, before.embeddings, atol=1e-5)
        assert wait_until(lambda: client.info().pools[0].healthy_replicas == 0, timeout=10)
        err = rpc_error(lambda: no_fallback.embed(["x"], "query"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "query pool has no healthy replica (embedded: " in err.details()


def test_documents_never_go_to_the_embedded_pool(stack, student, embedded_gateway):
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], student)
    stack.stop_encoder("d")
    with _client(gw, timeout=30) as client:
        err = rpc_error(lambda: client.embed(["x"], "document"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "document pool has no healthy replica" in err.details()
        assert client.embed(["x"], "query").encoder == "query"
    assert _replica(gw).encoder.batcher.stats.texts == 1


def test_a_mis_declared_embedded_model_is_refused(
    stack, student, student_dir, tmp_path, embedded_gateway
):
    other = make_space_variant(student_dir, tmp_path / "other", {"space_id": "other-space/384"})
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], Embedder(other))
    with _client(gw, timeout=30) as client:
        info = client.info()
        assert not info.serving and "different vector spaces" in info.problem
        assert "query@embedded" in info.problem
        err = rpc_error(lambda: client.embed(["x"], "query"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "other-space/384" in err.details()


def test_settings_refuse_an_embedded_document_pool_and_list_the_query_flags():
    from pydantic import ValidationError

    from aegis_serve.cli import build_parser

    with pytest.raises(ValidationError, match="document pool cannot be `embedded`"):
        GatewaySettings(query=["embedded"], document=["embedded"])
    with pytest.raises(ValidationError, match="may appear once"):
        GatewaySettings(query="embedded,embedded", document="127.0.0.1:9")
    mixed = GatewaySettings(query="embedded,10.0.0.1:50061", document="127.0.0.1:9")
    assert mixed.embedded_query and mixed.remote_query == ["10.0.0.1:50061"]
    gateway_help = build_parser()._subparsers._group_actions[0].choices["gateway"].format_help()
    for flag in ("--query-model", "--query-backend", "--query-threads", "--query-max-batch-tokens",
                 "--query-max-queue-texts"):  # fmt: skip
        assert flag in gateway_help
    up_help = build_parser()._subparsers._group_actions[0].choices["up"].format_help()
    assert "--query-mode {remote,embedded}" in up_help


@pytest.mark.timeout(400)
def test_up_with_an_embedded_query_pool_starts_and_serves(student_dir: Path, student):
    """`aegis-serve up --query-mode embedded`: two processes (document pool, gateway with the
    query model inside), the student as both models so it stays small."""
    proc = ServiceProcess(
        ["up", "--query-mode", "embedded", "--query-model", str(student_dir),
         "--document-model", str(student_dir), "--query-backend", "torch",
         "--gateway-port", "0", "--document-port", "0", "--query-threads", "1",
         "--document-threads", "1", "--shutdown-grace-s", "2"],
        ready_timeout=300, ready_marker="aegis-serve is up",
    )  # fmt: skip
    try:
        assert "embedded in the gateway" in proc.output
        assert not any("READY encoder role=query" in line for line in proc.lines)
        line = next(ln for ln in proc.lines if "READY gateway" in ln)
        address = line.split("address=")[1].split()[0]
        with EmbedClient(address, timeout=60) as client:
            result = client.embed(TEXTS[:2], "query")
            assert result.encoder == "query" and not result.fallback
            np.testing.assert_allclose(result.embeddings, student.embed(TEXTS[:2]), atol=1e-5)
            assert list(client.info().pools[0].replicas) == ["embedded"]
    finally:
        code = proc.terminate(timeout=60)
    assert code == 0, proc.output[-3000:]


def test_concurrent_queries_each_get_their_own_vector(stack, student, embedded_gateway):
    d = stack.encoder("d", student, "document")
    gw = embedded_gateway([d], student)
    texts = [f"query number {i} about topic {i % 7}" for i in range(48)]
    reference = student.embed(texts)
    results: dict[int, np.ndarray] = {}

    def worker(offset: int) -> None:
        with _client(gw) as client:
            for i in range(offset, len(texts), 6):
                results[i] = client.embed([texts[i]], "query").embeddings[0]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(len(texts)))
    for i, vec in results.items():
        np.testing.assert_allclose(vec, reference[i], atol=1e-5)
    assert _replica(gw).encoder.batcher.stats.texts == len(texts)
