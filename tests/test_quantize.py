"""The gateway's vector shaping must match sentence-transformers byte for byte, so vectors it
serves can sit in the same index as vectors quantized offline."""

from __future__ import annotations

import numpy as np
import pytest

from aegis.embed.v1 import embed_pb2
from aegis_serve.gateway.quantize import (
    ENCODING_VALUES,
    ENCODINGS,
    bytes_per_row,
    default_ranges,
    encode_rows,
    encoding_name,
    encoding_value,
    quantize,
    truncate_and_renormalize,
)

st_quantization = pytest.importorskip("sentence_transformers.util.quantization")
quantize_embeddings = st_quantization.quantize_embeddings

MATRYOSHKA_DIMS = [768, 512, 256, 128, 64]
SEEDS = [0, 1, 2, 3]


def _unit_rows(seed: int, n: int = 33, d: int = 768) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_truncate(matrix: np.ndarray, dims: int) -> np.ndarray:
    x = matrix[:, :dims].astype(np.float64)
    norms = np.sqrt((x * x).sum(axis=1, keepdims=True))
    safe = np.where(norms == 0, 1.0, norms)
    return (x / safe).astype(np.float32)


def _assert_same_bytes(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()


# --- truncate_and_renormalize -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dims", MATRYOSHKA_DIMS)
def test_truncate_matches_numpy_reference(seed: int, dims: int) -> None:
    x = _unit_rows(seed)
    out = truncate_and_renormalize(x, dims)
    assert out.dtype == np.float32
    assert out.shape == (x.shape[0], dims)
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, _reference_truncate(x, dims), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_truncate_full_dims_returns_renormalized_copy() -> None:
    x = _unit_rows(5) * 3.0
    out = truncate_and_renormalize(x, x.shape[1])
    assert not np.shares_memory(out, x)
    np.testing.assert_allclose(out, x / 3.0, rtol=1e-6, atol=1e-7)


def test_truncate_keeps_zero_rows_zero_without_nan() -> None:
    x = _unit_rows(6, n=4)
    x[1] = 0.0
    x[3, :64] = 0.0  # zero only in the kept prefix
    with np.errstate(all="raise"):
        out = truncate_and_renormalize(x, 64)
    assert np.isfinite(out).all()
    assert not out[1].any()
    assert not out[3].any()
    np.testing.assert_allclose(np.linalg.norm(out[[0, 2]], axis=1), 1.0, rtol=1e-5)


def test_truncate_accepts_float64_and_returns_float32() -> None:
    x = _unit_rows(7).astype(np.float64)
    assert truncate_and_renormalize(x, 128).dtype == np.float32


@pytest.mark.parametrize("dims", [0, -1, 769])
def test_truncate_rejects_bad_dims(dims: int) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        truncate_and_renormalize(_unit_rows(0), dims)


def test_truncate_rejects_non_matrix() -> None:
    with pytest.raises(ValueError, match="2-D"):
        truncate_and_renormalize(np.ones(8, dtype=np.float32), 4)


# --- quantize vs sentence-transformers ----------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dims", MATRYOSHKA_DIMS)
@pytest.mark.parametrize("encoding", ["int8", "uint8"])
def test_scalar_default_ranges_match_st_with_unit_ranges(
    seed: int, dims: int, encoding: str
) -> None:
    x = truncate_and_renormalize(_unit_rows(seed), dims)
    ranges = np.vstack([-np.ones(dims), np.ones(dims)]).astype(np.float32)
    theirs = quantize_embeddings(x, encoding, ranges=ranges)
    _assert_same_bytes(quantize(x, encoding), theirs)
    _assert_same_bytes(quantize(x, encoding, ranges=ranges), theirs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dims", MATRYOSHKA_DIMS)
@pytest.mark.parametrize("encoding", ["int8", "uint8"])
def test_scalar_custom_ranges_match_st(seed: int, dims: int, encoding: str) -> None:
    x = truncate_and_renormalize(_unit_rows(seed), dims)
    rng = np.random.default_rng(1000 + seed)
    # Per-dimension calibration ranges that contain every value, with uneven margins.
    lo = x.min(axis=0) - rng.uniform(0.0, 0.05, dims).astype(np.float32)
    hi = x.max(axis=0) + rng.uniform(0.0, 0.05, dims).astype(np.float32)
    ranges = np.vstack([lo, hi]).astype(np.float32)
    _assert_same_bytes(
        quantize(x, encoding, ranges=ranges), quantize_embeddings(x, encoding, ranges=ranges)
    )


@pytest.mark.parametrize("encoding", ["int8", "uint8"])
def test_scalar_calibrated_on_batch_matches_st(encoding: str) -> None:
    # ST's own batch calibration (ranges = per-dim min/max) passed explicitly: the tightest case,
    # where the max lands exactly on level 255.
    x = _unit_rows(9, n=200, d=256)
    ranges = np.vstack([x.min(axis=0), x.max(axis=0)])
    _assert_same_bytes(
        quantize(x, encoding, ranges=ranges), quantize_embeddings(x, encoding, ranges=ranges)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dims", MATRYOSHKA_DIMS)
@pytest.mark.parametrize("encoding", ["binary", "ubinary"])
def test_binary_matches_st(seed: int, dims: int, encoding: str) -> None:
    x = truncate_and_renormalize(_unit_rows(seed), dims)
    x[0, :8] = 0.0  # exact zeros count as "not > 0"
    ours = quantize(x, encoding)
    _assert_same_bytes(ours, quantize_embeddings(x, encoding))
    assert ours.shape == (x.shape[0], dims // 8)


@pytest.mark.parametrize("dims", MATRYOSHKA_DIMS)
def test_float_encodings(dims: int) -> None:
    x = truncate_and_renormalize(_unit_rows(0), dims)
    _assert_same_bytes(quantize(x, "float32"), quantize_embeddings(x, "float32"))
    half = quantize(x, "float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, x.astype(np.float16))


def test_quantize_does_not_depend_on_batch() -> None:
    x = _unit_rows(11, n=16, d=128)
    for encoding in ("int8", "uint8", "binary", "ubinary", "float16"):
        whole = quantize(x, encoding)
        alone = np.vstack([quantize(x[i : i + 1], encoding) for i in range(len(x))])
        _assert_same_bytes(whole, alone)


# --- saturation -----------------------------------------------------------------------------


def test_out_of_range_values_saturate() -> None:
    x = np.array([[-5.0, -1.5, -1.0, 0.0, 1.0, 1.5, 5.0, 1e30]], dtype=np.float32)
    u = quantize(x, "uint8")
    i = quantize(x, "int8")
    # Exactly 1.0 lands on 254 as in sentence-transformers: floor() of 254.99998 in float32.
    assert u.tolist() == [[0, 0, 0, 127, 254, 255, 255, 255]]
    assert i.tolist() == [[-128, -128, -128, -1, 126, 127, 127, 127]]
    # The installed sentence-transformers clips as well; in-range values are unaffected.
    ranges = default_ranges(x.shape[1])
    _assert_same_bytes(u, quantize_embeddings(x, "uint8", ranges=ranges))
    _assert_same_bytes(i, quantize_embeddings(x, "int8", ranges=ranges))


def test_saturation_with_custom_ranges() -> None:
    ranges = np.array([[0.0, -0.5], [0.5, 0.5]], dtype=np.float32)
    x = np.array([[-0.1, 0.6], [0.7, -0.9], [0.25, 0.0]], dtype=np.float32)
    u = quantize(x, "uint8", ranges=ranges)
    assert u[0].tolist() == [0, 255]
    assert u[1].tolist() == [255, 0]
    assert 0 < u[2, 0] < 255 and 0 < u[2, 1] < 255


def test_zero_width_range_does_not_divide_by_zero() -> None:
    ranges = np.array([[0.2, -1.0], [0.2, 1.0]], dtype=np.float32)
    x = np.array([[0.2, 0.0], [5.0, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        ours = quantize(x, "uint8", ranges=ranges)
    _assert_same_bytes(ours, quantize_embeddings(x, "uint8", ranges=ranges))


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["binary", "ubinary"])
@pytest.mark.parametrize("dims", [1, 7, 12, 100])
def test_binary_rejects_dims_not_multiple_of_8(encoding: str, dims: int) -> None:
    x = np.ones((2, dims), dtype=np.float32)
    with pytest.raises(ValueError, match="divisible by 8"):
        quantize(x, encoding)
    with pytest.raises(ValueError, match="divisible by 8"):
        bytes_per_row(encoding, dims)


@pytest.mark.parametrize("encoding", ["", "fp16", "INT8", "bfloat16", "int4"])
def test_unknown_encoding(encoding: str) -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        quantize(_unit_rows(0, d=64), encoding)
    with pytest.raises(ValueError, match="unknown encoding"):
        bytes_per_row(encoding, 64)
    with pytest.raises(ValueError, match="unknown encoding"):
        encoding_value(encoding)


def test_ranges_shape_must_match_dims() -> None:
    x = _unit_rows(0, d=64)
    with pytest.raises(ValueError, match="ranges"):
        quantize(x, "int8", ranges=default_ranges(128))
    with pytest.raises(ValueError, match="ranges"):
        quantize(x, "uint8", ranges=np.zeros((64,), dtype=np.float32))


def test_integer_input_rejected() -> None:
    with pytest.raises(ValueError, match="floating point"):
        quantize(np.ones((2, 8), dtype=np.int8), "uint8")


def test_non_matrix_rejected() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.ones(8, dtype=np.float32), "binary")


# --- encode_rows / enum mapping ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", list(ENCODING_VALUES))
@pytest.mark.parametrize("dims", [768, 64])
def test_encode_rows_one_little_endian_row_per_vector(encoding: str, dims: int) -> None:
    q = quantize(truncate_and_renormalize(_unit_rows(3, n=5), dims), encoding)
    rows = encode_rows(q)
    assert len(rows) == 5
    assert all(isinstance(r, bytes) and len(r) == bytes_per_row(encoding, dims) for r in rows)
    little = q.dtype.newbyteorder("<")
    for i, r in enumerate(rows):
        assert r == q[i].astype(little).tobytes()


def test_encode_rows_big_endian_and_non_contiguous_input() -> None:
    x = _unit_rows(4, n=6, d=16)
    big = x.astype(">f4")
    assert encode_rows(big) == encode_rows(x)
    strided = x[::2, ::2]
    assert encode_rows(strided) == [
        np.ascontiguousarray(r).astype("<f4").tobytes() for r in strided
    ]


def test_encode_rows_edge_shapes() -> None:
    assert encode_rows(np.zeros((0, 8), dtype=np.int8)) == []
    assert encode_rows(np.zeros((3, 0), dtype=np.uint8)) == [b"", b"", b""]
    with pytest.raises(ValueError, match="2-D"):
        encode_rows(np.zeros(8, dtype=np.uint8))


def test_encoding_enum_mapping() -> None:
    assert ENCODINGS[embed_pb2.ENCODING_UNSPECIFIED] == "float32"
    assert set(ENCODINGS) == set(embed_pb2.Encoding.values())
    for name, value in ENCODING_VALUES.items():
        assert ENCODINGS[value] == name
        assert encoding_name(value) == name
        assert encoding_value(name) == value
    with pytest.raises(ValueError, match="unknown encoding"):
        encoding_name(99)


@pytest.mark.parametrize(
    ("encoding", "dims", "expected"),
    [
        ("float32", 768, 3072),
        ("float16", 768, 1536),
        ("int8", 512, 512),
        ("uint8", 64, 64),
        ("binary", 768, 96),
        ("ubinary", 64, 8),
        ("float32", 0, 0),
    ],
)
def test_bytes_per_row(encoding: str, dims: int, expected: int) -> None:
    assert bytes_per_row(encoding, dims) == expected
