"""Typed client errors, standard pushback and the clients' retry policy, against real servers.

Every class of failure is produced by a real gateway (or a port nobody listens on) and seen
through the real Python clients, sync and async, and through the CLI's one-line errors.
"""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest

from aegis_client import (
    AegisError,
    AsyncEmbedClient,
    AuthenticationError,
    DeadlineExceededError,
    EmbedClient,
    FailedPreconditionError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitError,
    UnavailableError,
)
from aegis_serve.cli import main as cli_main
from conftest import make_space_variant

TEXTS = ["What is the capital of France?", "Paris is the capital of France."]
ALPHA, READER = "alpha-0123456789abcdef", "reader-fedcba9876543210"


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{ALPHA} name=alpha\n{READER} name=reader methods=GetInfo,Tokenize\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raises(cls: type[AegisError], fn) -> AegisError:
    with pytest.raises(cls) as info:
        fn()
    err = info.value
    assert isinstance(err.__cause__, grpc.RpcError)  # the grpc error stays reachable
    return err


def test_each_failure_class_is_a_typed_error(stack, student, tokens_file, tmp_path):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], auth_tokens_file=tokens_file, auth_rate_per_s=0.2, auth_burst=3)
    address = f"127.0.0.1:{gw.port}"
    with EmbedClient(address, token=ALPHA, timeout=30, max_attempts=1) as client:
        err = _raises(InvalidInputError, lambda: client.embed([""], "query"))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "inputs[0]" in err.details
        assert isinstance(err, ValueError) and not err.retryable
        err = _raises(InvalidInputError, lambda: client.embed(TEXTS, "query", dimensions=5))
        assert "dimensions" in err.details
        # Budget of 3 spent (two failed calls above count); the next one is rate limited.
        client.info()
        err = _raises(RateLimitError, lambda: client.info())
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.retryable
        assert err.retry_after is not None and 1.0 <= err.retry_after <= 5.0
    with EmbedClient(address, timeout=30) as anonymous:
        err = _raises(AuthenticationError, lambda: anonymous.info())
        assert err.code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in err.details
    with EmbedClient(address, token=READER, timeout=30) as reader:
        err = _raises(PermissionDeniedError, lambda: reader.embed(TEXTS, "query"))
        assert "'reader' may not call" in err.details
    plain = f"127.0.0.1:{stack.gateway([d], [d]).port}"
    with EmbedClient(plain, timeout=0.001, max_attempts=1) as hurried:
        err = _raises(DeadlineExceededError, lambda: hurried.embed(TEXTS * 50, "document"))
        assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    with EmbedClient(f"127.0.0.1:{_free_port()}", timeout=5) as nobody:
        err = _raises(UnavailableError, lambda: nobody.info())
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.retryable
    # A gateway whose pools declare different spaces refuses with FAILED_PRECONDITION.
    other = make_space_variant(student.cfg.root, tmp_path / "other", {"space_id": "x/384"})
    from aegis_serve.models.embedder import Embedder

    q = stack.encoder("q-other", Embedder(other), "query")
    split = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{split.port}", timeout=30) as client:
        err = _raises(FailedPreconditionError, lambda: client.embed(TEXTS, "query"))
        assert "different vector spaces" in err.details


def test_client_side_validation_is_invalid_input_before_any_round_trip():
    with EmbedClient(f"127.0.0.1:{_free_port()}", timeout=5) as client:
        for call in (
            lambda: client.embed(TEXTS, "passage"),
            lambda: client.embed(TEXTS, "query", encoding="int4"),
            lambda: client.embed(TEXTS, "query", dimensions=-1),
        ):
            with pytest.raises(InvalidInputError) as info:
                call()
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ValueError, match="max_attempts"):
        EmbedClient("127.0.0.1:1", max_attempts=6)


def test_async_client_raises_the_same_typed_errors(stack, student, tokens_file):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], auth_tokens_file=tokens_file)
    address = f"127.0.0.1:{gw.port}"

    async def run() -> list[AegisError]:
        errors: list[AegisError] = []
        async with AsyncEmbedClient(address, token=ALPHA, timeout=30) as client:
            for call in (
                lambda: client.embed([""], "document"),
                lambda: client.tokenize(TEXTS, "query", timeout=0.0001),
            ):
                try:
                    await call()
                except AegisError as exc:
                    errors.append(exc)
        async with AsyncEmbedClient(address, timeout=30) as anonymous:
            try:
                await anonymous.info()
            except AegisError as exc:
                errors.append(exc)
        return errors

    errors = asyncio.run(run())
    assert [type(e) for e in errors] == [
        InvalidInputError,
        DeadlineExceededError,
        AuthenticationError,
    ]


def test_client_retry_waits_the_servers_pushback_and_succeeds(stack, student, tokens_file):
    """Rate 1/s, burst 1: the second call is refused with `grpc-retry-pushback-ms` ≈ 1000.
    Without pushback the policy's own backoff (≤ 0.1 + 0.2 + 0.4 s) would spend every attempt
    before a token is back, so a success proves the channel waited what the server asked."""
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d], auth_tokens_file=tokens_file, auth_rate_per_s=1, auth_burst=1)
    address = f"127.0.0.1:{gw.port}"
    with EmbedClient(address, token=ALPHA, timeout=1.5, max_attempts=1) as once:
        once.embed(TEXTS, "query")
        err = _raises(RateLimitError, lambda: once.embed(TEXTS, "query"))
        assert 0.5 <= err.retry_after <= 1.0
        assert dict(err.trailing_metadata)["grpc-retry-pushback-ms"] == str(
            round(err.retry_after * 1000)
        )
    time.sleep(1.1)  # the bucket refills
    with EmbedClient(address, token=ALPHA, timeout=10) as client:
        client.embed(TEXTS, "query")
        start = time.monotonic()
        result = client.embed(TEXTS, "query")  # refused once, retried after the pushback
        waited = time.monotonic() - start
    assert result.embeddings.shape[0] == 2
    assert 0.8 <= waited < 5, waited


def test_cli_prints_one_line_errors_and_exits_non_zero(stack, student, capsys):
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d])
    target = f"127.0.0.1:{gw.port}"
    assert cli_main(["embed", "--target", target, "--type", "query", ""]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: INVALID_ARGUMENT: inputs[0] is empty; every input must be a non-empty string"
    ] or (err.count("\n") == 1 and err.startswith("error: INVALID_ARGUMENT: inputs[0]")), err
    assert "Traceback" not in err
    assert cli_main(["embed", "--target", target, "--type", "query", "", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: INVALID_ARGUMENT") and "Traceback" in err
    assert cli_main(["info", "--target", f"127.0.0.1:{_free_port()}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ") and err.count("\n") == 1, err
    assert cli_main(["embed", "--target", target, "--type", "query", "hello"]) == 0
