"""TLS/mTLS on the gateway and between gateway and pools; bearer-token auth and rate limits."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aegis.embed.v1 import embed_pb2, embed_pb2_grpc
from aegis_client import EmbedClient
from aegis_serve.gateway.auth import load_principals, parse_line
from certs import TestCA
from conftest import rpc_error, wait_until

TEXTS = ["What is the capital of France?", "Paris is the capital of France."]


@pytest.fixture
def ca(tmp_path) -> TestCA:
    return TestCA(tmp_path / "pki")


# ------------------------------------------------------------------- TLS
def test_tls_gateway_serves_clients_that_trust_its_ca(stack, student, ca):
    server = ca.issue("gateway", server=True)
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d], tls_cert=server.cert, tls_key=server.key)
    address = f"127.0.0.1:{gw.port}"
    with EmbedClient(address, tls=True, root_certificates=ca.ca_path.read_bytes()) as client:
        got = client.embed(TEXTS, "document").embeddings
    np.testing.assert_allclose(got, student.embed(TEXTS), atol=1e-5)
    with EmbedClient(address, timeout=5) as plaintext:
        err = rpc_error(lambda: plaintext.embed(TEXTS, "document"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_gateway_requires_a_client_certificate(stack, student, ca):
    server = ca.issue("gateway", server=True)
    client_cert = ca.issue("caller", server=False)
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], tls_cert=server.cert, tls_key=server.key, tls_ca=ca.ca_path)
    address = f"127.0.0.1:{gw.port}"
    root, key, chain = client_cert.read()
    with EmbedClient(
        address, tls=True, root_certificates=root, private_key=key, certificate_chain=chain
    ) as client:
        assert client.embed(TEXTS, "document").embeddings.shape == (2, 384)
    with EmbedClient(address, tls=True, root_certificates=root, timeout=5) as anonymous:
        err = rpc_error(lambda: anonymous.embed(TEXTS, "document"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def _mtls_encoders(stack, student, ca) -> tuple[str, str]:
    server = ca.issue("encoder", server=True, dns=("encoder.aegis.test",))
    tls = {"tls_cert": server.cert, "tls_key": server.key, "tls_ca": ca.ca_path}
    return stack.encoder("q", student, "query", **tls), stack.encoder(
        "d", student, "document", **tls
    )


def test_gateway_reaches_mtls_pools_with_its_client_certificate(stack, student, ca):
    q, d = _mtls_encoders(stack, student, ca)
    me = ca.issue("gateway-client", server=False)
    gw = stack.gateway(
        [q],
        [d],
        pool_tls_ca=ca.ca_path,
        pool_tls_cert=me.cert,
        pool_tls_key=me.key,
        pool_tls_server_name="encoder.aegis.test",
    )
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=30) as client:
        assert client.info().serving
        got = client.embed(TEXTS, "query").embeddings
    np.testing.assert_allclose(got, student.embed(TEXTS), atol=1e-5)


@pytest.mark.parametrize("mode", ["no client cert", "plaintext", "wrong server name"])
def test_gateway_without_valid_pool_credentials_reports_unavailable(stack, student, ca, mode):
    q, d = _mtls_encoders(stack, student, ca)
    me = ca.issue("gateway-client", server=False)
    overrides = {
        "no client cert": {"pool_tls_ca": ca.ca_path},
        "plaintext": {},
        "wrong server name": {
            "pool_tls_ca": ca.ca_path,
            "pool_tls_cert": me.cert,
            "pool_tls_key": me.key,
            "pool_tls_server_name": "someone-else.test",
        },
    }[mode]
    gw = stack.gateway([q], [d], **overrides)
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=10) as client:
        info = client.info()
        assert not info.serving and info.pools[1].healthy_replicas == 0
        err = rpc_error(lambda: client.embed(TEXTS, "document"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "document pool has no healthy replica" in err.details()


def test_pool_tls_settings_must_pair():
    from pydantic import ValidationError

    from aegis_serve.settings import GatewaySettings

    with pytest.raises(ValidationError, match="pool_tls_cert and pool_tls_key go together"):
        GatewaySettings(query=["a:1"], document=["b:1"], pool_tls_cert="c.pem")
    with pytest.raises(ValidationError, match="needs pool_tls_ca"):
        GatewaySettings(query=["a:1"], document=["b:1"], pool_tls_cert="c", pool_tls_key="k")


# ------------------------------------------------------------------ auth
ALPHA, READER, PLAIN, FROM_ENV = (
    "alpha-0123456789abcdef",
    "reader-fedcba9876543210",
    "plain-00112233445566778899",
    "env-aabbccddeeff",
)


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(
        "# tokens for the test gateway\n\n"
        f"{ALPHA} name=alpha\n"
        f"{READER} name=reader methods=GetInfo,Tokenize\n"
        f"{PLAIN}\n"
    )
    return path


def _stub(gw) -> embed_pb2_grpc.EmbedServiceStub:
    return embed_pb2_grpc.EmbedServiceStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


EMBED = embed_pb2.EmbedRequest(inputs=TEXTS, input_type=embed_pb2.INPUT_TYPE_DOCUMENT)


def test_bearer_tokens_statuses_and_open_probes(stack, student, tokens_file, caplog):
    caplog.set_level(logging.DEBUG)
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], auth_tokens_file=tokens_file, auth_tokens=FROM_ENV)
    stub = _stub(gw)
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "missing authorization"),
        ((("authorization", f"Basic {ALPHA}"),), grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        ((("authorization", "Bearer"),), grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (_bearer(ALPHA + "x"), grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token"),
        (_bearer(READER), grpc.StatusCode.PERMISSION_DENIED, "'reader' may not call"),
    ]
    for metadata, code, needle in cases:
        err = rpc_error(lambda m=metadata: stub.Embed(EMBED, metadata=m, timeout=10))
        assert err.code() == code and needle in err.details(), (metadata, err)
    for token in (ALPHA, PLAIN, FROM_ENV):
        assert len(stub.Embed(EMBED, metadata=_bearer(token), timeout=30).embeddings) == 2
    assert stub.GetInfo(embed_pb2.GetInfoRequest(), metadata=_bearer(READER), timeout=5).serving
    # Streaming calls are checked too.
    err = rpc_error(lambda: list(stub.EmbedStream(iter([EMBED]), timeout=10)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    with EmbedClient(f"127.0.0.1:{gw.port}", token=ALPHA, timeout=30) as client:
        assert client.embed(TEXTS, "query").embeddings.shape == (2, 384)
    # Probes need no token.
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{gw.port}"))
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    logged = caplog.text
    assert "unknown bearer token" in logged and "alpha" in logged
    for secret in (ALPHA, READER, PLAIN, FROM_ENV):
        assert secret not in logged


def test_rate_limit_per_token_answers_resource_exhausted_with_retry_after(
    stack, student, tokens_file
):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], auth_tokens_file=tokens_file, auth_rate_per_s=0.5, auth_burst=2)
    stub = _stub(gw)
    info = embed_pb2.GetInfoRequest()
    for _ in range(2):
        stub.GetInfo(info, metadata=_bearer(ALPHA), timeout=5)
    err = rpc_error(lambda: stub.GetInfo(info, metadata=_bearer(ALPHA), timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit of 0.5 requests/s for token 'alpha'" in err.details()
    trailers = dict(err.trailing_metadata())
    retry = trailers["grpc-retry-pushback-ms"]
    assert 1000 <= int(retry) <= 2000 and trailers["retry-after-ms"] == retry
    # Another token has its own bucket.
    assert stub.GetInfo(info, metadata=_bearer(PLAIN), timeout=5).serving


def test_tokens_file_format_errors_are_clear(tmp_path):
    assert parse_line("  # comment", "f:1") is None and parse_line("", "f:2") is None
    p = parse_line("tok name=ci methods=Embed,/aegis.embed.v1.EmbedService/GetInfo", "f:3")
    assert p is not None and p.name == "ci"
    assert p.allows("/aegis.embed.v1.EmbedService/Embed")
    assert p.allows("/aegis.embed.v1.EmbedService/GetInfo")
    assert not p.allows("/aegis.embed.v1.EmbedService/Tokenize")
    unnamed = parse_line("tok2", "f:4")
    assert (
        unnamed is not None and unnamed.name.startswith("sha256:") and "tok2" not in repr(unnamed)
    )
    with pytest.raises(ValueError, match="f:5: unknown option 'scope'"):
        parse_line("tok scope=all", "f:5")
    with pytest.raises(ValueError, match="configured twice"):
        load_principals(["same", "same"], None)
    with pytest.raises(ValueError, match="cannot read auth_tokens_file"):
        load_principals([], tmp_path / "missing")


def test_cli_flags_and_environment_reach_the_gateway_settings(monkeypatch, tmp_path):
    from aegis_serve.cli import _settings, build_parser
    from aegis_serve.settings import GatewaySettings

    monkeypatch.setenv("AEGIS_AUTH_TOKENS", "one, two ,")
    monkeypatch.setenv("AEGIS_AUTH_RATE_PER_S", "5")
    ns = build_parser().parse_args(
        ["gateway", "--query", "q:1", "--document", "d:1", "--auth-tokens-file", "t",
         "--pool-tls-ca", "ca.pem", "--pool-tls-cert", "c.pem", "--pool-tls-key", "k.pem",
         "--pool-tls-server-name", "enc", "--max-inflight-requests", "7",
         "--max-concurrent-streams", "3", "--max-request-tokens", "900"]
    )  # fmt: skip
    s = _settings(GatewaySettings, ns)
    assert s.auth_tokens == ["one", "two"] and s.auth_rate_per_s == 5
    assert str(s.auth_tokens_file) == "t" and str(s.pool_tls_ca) == "ca.pem"
    assert s.pool_tls_server_name == "enc" and s.max_inflight_requests == 7
    assert (s.max_concurrent_streams, s.max_request_tokens) == (3, 900)


def test_gateway_refuses_to_start_with_an_unreadable_tokens_file(tmp_path):
    from aegis_serve.cli import main

    with pytest.raises(SystemExit, match="cannot read auth_tokens_file"):
        main(["gateway", "--query", "q:1", "--document", "d:1",
              "--auth-tokens-file", str(tmp_path / "nope")])  # fmt: skip


# ------------------------------------------------------------- rotation
def _served_serial(port: int, ca_path) -> int:
    """Serial number of the certificate the server presents to a new connection."""
    import ssl

    from cryptography import x509

    pem = ssl.get_server_certificate(("127.0.0.1", port), ca_certs=str(ca_path), timeout=10)
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def _serial(path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_rotated_certificate_is_picked_up_without_restart_or_failed_calls(
    stack, student, ca, tmp_path
):
    import concurrent.futures
    import os
    import shutil

    first, second = ca.issue("gateway-a", server=True), ca.issue("gateway-b", server=True)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copyfile(first.cert, cert)
    shutil.copyfile(first.key, key)
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], tls_cert=cert, tls_key=key)
    address = f"127.0.0.1:{gw.port}"
    assert _served_serial(gw.port, ca.ca_path) == _serial(first.cert)
    roots = ca.ca_path.read_bytes()
    with EmbedClient(address, tls=True, root_certificates=roots, timeout=60) as client:
        want = client.embed(TEXTS, "document").embeddings
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(client.embed, TEXTS * 8, "document") for _ in range(16)]
            for src, dst in ((second.key, key), (second.cert, cert)):  # as a Secret update
                tmp = dst.with_suffix(".new")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            results = [c.result(timeout=120) for c in calls]  # none fails
        assert all(r.embeddings.shape == (16, 384) for r in results)
        np.testing.assert_allclose(client.embed(TEXTS, "document").embeddings, want, atol=1e-6)
    # New connections get the new certificate; the process never restarted.
    assert _served_serial(gw.port, ca.ca_path) == _serial(second.cert)
    with EmbedClient(address, tls=True, root_certificates=roots, timeout=60) as fresh:
        np.testing.assert_allclose(fresh.embed(TEXTS, "document").embeddings, want, atol=1e-6)


def test_gateway_follows_pool_tls_files_without_a_restart(stack, student, tmp_path):
    """The encoders move to certificates of a new CA: the gateway's pool CA file is first
    extended to trust both (replaced on disk, no restart), then the encoder restarts with a
    new-CA certificate on its old port. Without re-reading the file the gateway could not
    verify the new certificate and the pool would stay down."""
    import os

    old_ca, new_ca = TestCA(tmp_path / "old", "old-ca"), TestCA(tmp_path / "new", "new-ca")

    def encoder(ca: TestCA, port: int = 0) -> str:
        cert = ca.issue(f"encoder-{ca.ca_path.parent.name}", server=True,
                        dns=("encoder.aegis.test",))  # fmt: skip
        return stack.encoder("d", student, "document", tls_cert=cert.cert, tls_key=cert.key,
                             port=port)  # fmt: skip

    d = encoder(old_ca)
    trust = tmp_path / "pool-ca.pem"
    trust.write_bytes(old_ca.ca_path.read_bytes())
    gw = stack.gateway([d], [d], pool_tls_ca=trust, pool_tls_server_name="encoder.aegis.test")
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=30) as client:
        want = client.embed(TEXTS, "document").embeddings
        bundle = trust.with_suffix(".new")
        bundle.write_bytes(old_ca.ca_path.read_bytes() + new_ca.ca_path.read_bytes())
        os.replace(bundle, trust)
        stack.refresh(gw)  # the gateway's probe loop does this every health interval
        np.testing.assert_allclose(client.embed(TEXTS, "document").embeddings, want, atol=1e-6)
        stack.stop_encoder("d")
        encoder(new_ca, port=int(d.rsplit(":", 1)[1]))

        def pool_up() -> bool:
            return client.info().pools[1].healthy_replicas == 1

        assert wait_until(pool_up, timeout=30)
        np.testing.assert_allclose(client.embed(TEXTS, "document").embeddings, want, atol=1e-6)


def test_the_openai_face_requires_the_same_client_certificate(stack, student, ca):
    """With mTLS on gRPC, the HTTP face (same certificate files) refuses callers without one."""
    import ssl

    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    server = ca.issue("gateway", server=True)
    caller = ca.issue("caller", server=False)
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], tls_cert=server.cert, tls_key=server.key, tls_ca=ca.ca_path,
                       http_port=0)  # fmt: skip
    url = f"https://127.0.0.1:{gw.http.port}/v1/embeddings"
    body = {"model": "aegis-document", "input": TEXTS}
    trusted = ssl.create_default_context(cafile=str(ca.ca_path))
    trusted.load_cert_chain(str(caller.cert), str(caller.key))
    with httpx.Client(verify=trusted, timeout=10) as client:
        got = client.post(url, json=body).json()
    np.testing.assert_allclose([row["embedding"] for row in got["data"]], student.embed(TEXTS),
                               atol=1e-5)  # fmt: skip
    anonymous = ssl.create_default_context(cafile=str(ca.ca_path))
    with httpx.Client(verify=anonymous, timeout=10) as client, pytest.raises(httpx.HTTPError):
        client.post(url, json=body)
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):  # plaintext
        client.post(url.replace("https", "http"), json=body)
