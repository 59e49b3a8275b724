"""Client-side decoding must invert the gateway's packing exactly (no server involved)."""

from __future__ import annotations

import numpy as np
import pytest

from aegis.embed.v1 import embed_pb2
from aegis_client import EmbedResult, decode_embeddings
from aegis_serve.gateway.quantize import (
    ENCODING_VALUES,
    encode_rows,
    quantize,
    truncate_and_renormalize,
)


def _unit_rows(seed: int, n: int = 9, d: int = 768) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _response(x: np.ndarray, encoding: str) -> embed_pb2.EmbedResponse:
    """Build an EmbedResponse the way the gateway does."""
    response = embed_pb2.EmbedResponse(
        dimensions=x.shape[1], encoding=ENCODING_VALUES[encoding], model="m", encoder="query"
    )
    if encoding == "float32":
        for row in x:
            response.embeddings.add(values=row.tolist())
    else:
        for data in encode_rows(quantize(x, encoding)):
            response.embeddings.add(data=data)
    return response


@pytest.mark.parametrize("dims", [768, 256, 64])
def test_float32_round_trip(dims: int) -> None:
    x = truncate_and_renormalize(_unit_rows(0), dims)
    out = decode_embeddings(_response(x, "float32"))
    assert out.dtype == np.float32
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, x)


def test_unspecified_encoding_is_float32() -> None:
    x = _unit_rows(1, d=16)
    response = _response(x, "float32")
    response.encoding = embed_pb2.ENCODING_UNSPECIFIED
    np.testing.assert_array_equal(decode_embeddings(response), x)


@pytest.mark.parametrize("dims", [768, 128])
def test_float16_round_trip(dims: int) -> None:
    x = truncate_and_renormalize(_unit_rows(2), dims)
    out = decode_embeddings(_response(x, "float16"))
    assert out.dtype == np.float16
    assert out.shape == x.shape
    np.testing.assert_allclose(out.astype(np.float32), x, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("encoding", ["int8", "uint8"])
@pytest.mark.parametrize("dims", [768, 512, 64])
def test_scalar_round_trip(encoding: str, dims: int) -> None:
    x = truncate_and_renormalize(_unit_rows(3), dims)
    out = decode_embeddings(_response(x, encoding))
    expected = quantize(x, encoding)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["binary", "ubinary"])
@pytest.mark.parametrize("dims", [768, 64, 8])
def test_binary_round_trip_packed_and_unpacked(encoding: str, dims: int) -> None:
    x = truncate_and_renormalize(_unit_rows(4), dims)
    response = _response(x, encoding)
    packed = decode_embeddings(response)
    expected = quantize(x, encoding)
    assert packed.dtype == expected.dtype
    assert packed.shape == (x.shape[0], dims // 8)
    np.testing.assert_array_equal(packed, expected)

    bits = decode_embeddings(response, unpack_bits=True)
    assert bits.dtype == np.uint8
    assert bits.shape == x.shape
    np.testing.assert_array_equal(bits, (x > 0).astype(np.uint8))


def test_unpack_bits_ignored_for_non_binary() -> None:
    x = _unit_rows(5, d=32)
    np.testing.assert_array_equal(
        decode_embeddings(_response(x, "int8"), unpack_bits=True), quantize(x, "int8")
    )


@pytest.mark.parametrize("encoding", list(ENCODING_VALUES))
def test_decoded_arrays_are_writable(encoding: str) -> None:
    out = decode_embeddings(_response(_unit_rows(6, d=64), encoding))
    assert out.flags.writeable
    assert out.flags.c_contiguous


@pytest.mark.parametrize("encoding", list(ENCODING_VALUES))
def test_empty_response(encoding: str) -> None:
    response = embed_pb2.EmbedResponse(dimensions=64, encoding=ENCODING_VALUES[encoding])
    out = decode_embeddings(response)
    assert out.shape[0] == 0


def test_row_with_wrong_float_count_is_rejected() -> None:
    response = _response(_unit_rows(7, n=3, d=16), "float32")
    del response.embeddings[1].values[-1]
    with pytest.raises(ValueError, match="embedding 1 has 15 float values"):
        decode_embeddings(response)


@pytest.mark.parametrize("encoding", ["float16", "int8", "uint8", "binary", "ubinary"])
def test_row_with_wrong_byte_count_is_rejected(encoding: str) -> None:
    response = _response(_unit_rows(8, n=3, d=64), encoding)
    response.embeddings[2].data = response.embeddings[2].data[:-1]
    with pytest.raises(ValueError, match="embedding 2 has"):
        decode_embeddings(response)


def test_dimensions_mismatch_is_rejected() -> None:
    response = _response(_unit_rows(9, n=2, d=64), "int8")
    response.dimensions = 128
    with pytest.raises(ValueError, match="expected 128"):
        decode_embeddings(response)


def test_binary_dimensions_not_multiple_of_8_rejected() -> None:
    response = _response(_unit_rows(10, n=2, d=64), "ubinary")
    response.dimensions = 60
    with pytest.raises(ValueError, match="divisible by 8"):
        decode_embeddings(response)


def test_zero_dimensions_with_rows_rejected() -> None:
    response = _response(_unit_rows(11, n=2, d=8), "float32")
    response.dimensions = 0
    with pytest.raises(ValueError, match="dimensions == 0"):
        decode_embeddings(response)


def test_unknown_encoding_value_rejected() -> None:
    response = embed_pb2.EmbedResponse(dimensions=8)
    response.encoding = 42  # an enum value from a newer server
    with pytest.raises(ValueError, match="unknown encoding"):
        decode_embeddings(response)


def test_embed_result_fields() -> None:
    # EmbedResult is what EmbedClient.embed returns; keep its public field names stable.
    names = {f for f in EmbedResult.__dataclass_fields__}
    assert {
        "embeddings",
        "model",
        "encoder",
        "dimensions",
        "encoding",
        "input_tokens",
        "fallback",
        "timing",
        "raw",
    } <= names
