"""The OpenAI-compatible HTTP face, driven by the real `openai` SDK against a live gateway."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from aegis_client import EmbedClient

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.teacher

TEXTS = ["how do bees make honey", "Honeybees turn nectar into honey in the comb."]


def _faces(asymmetric_pools, **settings):
    """(gRPC target, HTTP base URL) of a gateway with the HTTP face on a free port."""
    stack, query, document = asymmetric_pools
    runtime = stack.gateway(query, document, http_port=0, **settings)
    yield f"127.0.0.1:{runtime.port}", f"http://127.0.0.1:{runtime.http.port}/v1"
    stack.lt.run(runtime.handle.server.stop(0))
    stack.lt.run(runtime.close())
    stack.gateways.remove(runtime)


@pytest.fixture(scope="module")
def faces(asymmetric_pools):
    yield from _faces(asymmetric_pools, auth_tokens=["s3cret name=app"], max_inputs=8)


@pytest.fixture
def limited_faces(asymmetric_pools):
    """Auth on, 0.5 requests/s per token, bursts of 3."""
    yield from _faces(
        asymmetric_pools, auth_tokens=["other name=slow"], auth_rate_per_s=0.5, auth_burst=3
    )


def _sdk(base_url: str, key: str = "s3cret") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def test_the_model_name_or_input_type_picks_the_pool(faces):
    target, base_url = faces
    with EmbedClient(target, token="s3cret") as grpc_client:
        want_q = grpc_client.embed_queries(TEXTS)
        want_d = grpc_client.embed_documents(TEXTS)
        want_256 = grpc_client.embed_queries(TEXTS, dimensions=256)
    sdk = _sdk(base_url)
    # Unasked, the SDK requests base64 and decodes it itself; asked, it hands the string over.
    for fmt in (openai.NOT_GIVEN, "float"):
        got = sdk.embeddings.create(model="aegis-query", input=TEXTS, encoding_format=fmt)
        np.testing.assert_allclose([d.embedding for d in got.data], want_q, atol=1e-6)
        assert [d.index for d in got.data] == [0, 1] and got.model == "aegis-query"
        assert got.usage.prompt_tokens == got.usage.total_tokens > 0
    got = sdk.embeddings.create(model="aegis-query", input=TEXTS, encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in got.data]
    np.testing.assert_array_equal(decoded, want_q)
    got = sdk.embeddings.create(model="aegis-document", input=TEXTS)
    np.testing.assert_allclose([d.embedding for d in got.data], want_d, atol=1e-6)
    got = sdk.embeddings.create(model="aegis", input=TEXTS[0], extra_body={"input_type": "query"})
    np.testing.assert_allclose(got.data[0].embedding, want_q[0], atol=1e-6)
    got = sdk.embeddings.create(model="aegis", input=TEXTS)  # no input_type: documents
    np.testing.assert_allclose([d.embedding for d in got.data], want_d, atol=1e-6)
    got = sdk.embeddings.create(model="aegis-query", input=TEXTS, dimensions=256)
    np.testing.assert_allclose([d.embedding for d in got.data], want_256, atol=1e-6)
    names = {m.id for m in sdk.models.list()}
    assert {"aegis", "aegis-query", "aegis-document"} <= names


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"model": "aegis-query", "input": [""]}, 400, "inputs[0] is empty"),
        ({"model": "aegis-query", "input": ["x"], "dimensions": 100}, 400, "dimensions=100"),
        ({"model": "aegis-query", "input": [[1, 2, 3]]}, 400, "token arrays"),
        ({"model": "aegis-query", "input": ["x"] * 9}, 400, "8"),
        ({"model": "text-embedding-3-small", "input": ["x"]}, 404, "does not exist"),
        ({"model": "aegis-query", "input": ["x"], "extra_body": {"input_type": "document"}},
         400, "embeds querys"),
        ({"model": "aegis", "input": ["x"], "extra_body": {"input_type": "passage"}},
         400, "input_type 'passage'"),
        ({"model": "aegis", "input": ["x"], "extra_body": {"colour": "red"}}, 400, "colour"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_errors(faces, kwargs, status, needle):
    _, base_url = faces
    with pytest.raises(openai.APIStatusError) as info:
        _sdk(base_url).embeddings.create(**kwargs)
    err = info.value
    assert err.status_code == status
    assert needle in err.message
    body = err.body
    assert set(body) >= {"message", "type", "param", "code"}


def test_auth_and_rate_limits_are_the_grpc_faces(limited_faces):
    target, base_url = limited_faces
    with pytest.raises(openai.AuthenticationError, match="unknown bearer token"):
        _sdk(base_url, key="wrong").embeddings.create(model="aegis", input="x")
    raw = httpx.post(f"{base_url}/embeddings", json={"model": "aegis", "input": "x"})
    assert raw.status_code == 401 and raw.json()["error"]["code"] == "unauthenticated"
    # 3 requests of burst, then 429 with the wait; the gRPC face shares the bucket.
    sdk = _sdk(base_url, key="other")
    for _ in range(3):
        sdk.embeddings.create(model="aegis-query", input="x")
    with pytest.raises(openai.RateLimitError) as info:
        sdk.embeddings.create(model="aegis-query", input="x")
    headers = info.value.response.headers
    assert int(headers["retry-after-ms"]) > 0 and int(headers["retry-after"]) >= 1
    from aegis_client import RateLimitError

    with (
        EmbedClient(target, token="other", max_attempts=1) as grpc_client,
        pytest.raises(RateLimitError),
    ):
        grpc_client.embed_queries("x")


def test_the_face_is_off_unless_asked(asymmetric_pools):
    stack, query, document = asymmetric_pools
    runtime = stack.gateway(query, document)
    try:
        assert runtime.http is None
    finally:
        stack.lt.run(runtime.handle.server.stop(0))
        stack.lt.run(runtime.close())
        stack.gateways.remove(runtime)


def test_a_face_that_cannot_start_leaves_no_gateway_behind(asymmetric_pools):
    """The HTTP port taken: the start fails with the reason and the gRPC port is released."""
    import socket

    from aegis_serve.gateway.server import start_gateway
    from aegis_serve.settings import GatewaySettings

    stack, query, document = asymmetric_pools
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        probe.bind(("127.0.0.1", 0))
        grpc_port = probe.getsockname()[1]
        probe.close()
        settings = GatewaySettings(query=query, document=document, port=grpc_port,
                                   http_port=taken.getsockname()[1])  # fmt: skip
        with pytest.raises(OSError, match="in use"):
            stack.lt.run(start_gateway(settings))
    with socket.socket() as again:  # nothing listens there any more
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", grpc_port))
        again.listen()
