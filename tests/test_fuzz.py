"""Short form of the fuzz campaign: hypothesis requests and raw bytes against real processes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from aegis_lab.chaos.fleet import Fleet, FleetConfig
from aegis_lab.chaos.fuzz import EMBED_PATH, STREAM_PATH, TOKENIZE_PATH, run_fuzz
from aegis_serve.models.resolve import resolve_model


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    model_dir = resolve_model("builtin:query", progress=False)
    with Fleet(FleetConfig(model_dir, documents=1)) as f:
        yield f


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (EMBED_PATH, b"\xff\xff\xff"),  # corrupt wire format
        (EMBED_PATH, b"\x0a\x03\xed\xa0\x80\x10\x01"),  # a lone surrogate's bytes: bad UTF-8
        (TOKENIZE_PATH, b"\x0a\xff\xff\xff\x0f"),  # length past the end
    ],
)
def test_undecodable_bytes_are_invalid_argument(fleet: Fleet, path: str, payload: bytes) -> None:
    with grpc.insecure_channel(fleet.address) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(path)(payload, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a valid" in info.value.details()


def test_bad_stream_message_ends_the_stream_at_once(fleet: Fleet) -> None:
    good = b"\x0a\x02hi\x10\x01"
    with grpc.insecure_channel(fleet.address) as channel, pytest.raises(grpc.RpcError) as info:
        list(channel.stream_stream(STREAM_PATH)(iter([good, b"\xff\xff"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not DEADLINE_EXCEEDED


def test_fuzz_campaign_gets_only_defined_answers(fleet: Fleet) -> None:
    tallies = run_fuzz(fleet.address, examples=30, seed=1)
    for rpc, t in tallies.items():
        assert t.sent == 30, rpc
        assert t.failed == 0, (rpc, t.examples)
    assert tallies["Embed"].ok > 0 and tallies["raw bytes"].rejected > 0
    assert not fleet.crashed()
    from aegis_client import EmbedClient

    with EmbedClient(fleet.address, timeout=30) as client:
        assert client.embed(["still answering"], "query").embeddings.shape == (1, 768)


def test_every_malformed_class_gets_its_documented_status(fleet: Fleet) -> None:
    from aegis_lab.chaos.malformed import CLASSES, run_classes

    assert len(CLASSES) >= 30
    tallies = run_classes(fleet.address, per_class=2, seed=3)
    failed = {name: t.examples for name, t in tallies.items() if not t.passed}
    assert not failed, failed
    assert all(t.sent >= 2 for t in tallies.values())
    assert not fleet.crashed()
