"""Vector shaping applied by the gateway before vectors leave: Matryoshka truncation,
renormalization, quantization and packing into ``Embedding.data`` rows.

Quantization follows sentence-transformers ``quantize_embeddings`` bit for bit, so vectors
served here can be compared with (or indexed next to) vectors quantized offline with
sentence-transformers. The one difference is that int8/uint8 *never infer ranges from the
batch*: a service must return the same vector for a text whatever else was in its batch, so
ranges come from the space's calibration file or default to -1..+1 per dimension (the
mdbr-leaf model card's recommendation for normalized vectors).
"""

from __future__ import annotations

import numpy as np

from aegis_client.decode import ENCODING_NAMES, ENCODING_VALUES

__all__ = [
    "ENCODINGS",
    "ENCODING_DTYPES",
    "ENCODING_VALUES",
    "bytes_per_row",
    "default_ranges",
    "encode_rows",
    "encoding_name",
    "encoding_value",
    "quantize",
    "truncate_and_renormalize",
]

# The enum <-> name tables live with the client (the protocol's lowest layer): one copy.
#: Proto enum value -> encoding name (UNSPECIFIED means float32); name -> explicit enum value.
ENCODINGS: dict[int, str] = ENCODING_NAMES

#: Encoding name -> little-endian wire dtype of one element of a quantized row.
ENCODING_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "binary": np.dtype("i1"),
    "ubinary": np.dtype("u1"),
}

_PACKED = frozenset({"binary", "ubinary"})


def encoding_name(value: int) -> str:
    """Proto ``Encoding`` value -> name; ValueError for values this build does not know."""
    try:
        return ENCODINGS[value]
    except KeyError:
        raise ValueError(f"unknown encoding enum value {value!r}") from None


def encoding_value(name: str) -> int:
    """Encoding name -> proto ``Encoding`` value; ValueError lists the accepted names."""
    try:
        return ENCODING_VALUES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown encoding {name!r}; expected one of {sorted(ENCODING_VALUES)}"
        ) from None


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODING_DTYPES:
        raise ValueError(
            f"unknown encoding {encoding!r}; expected one of {sorted(ENCODING_DTYPES)}"
        )


def _check_packable(dims: int) -> None:
    if dims % 8:
        raise ValueError(f"binary encodings need dimensions divisible by 8, got {dims}")


def bytes_per_row(encoding: str, dims: int) -> int:
    """Size of one vector's ``Embedding.data`` for ``encoding`` at ``dims`` dimensions.

    Lets the gateway size limits and clients validate responses without encoding anything.
    """
    _check_encoding(encoding)
    if dims < 0:
        raise ValueError(f"dimensions must be >= 0, got {dims}")
    if encoding in _PACKED:
        _check_packable(dims)
        return dims // 8
    return dims * ENCODING_DTYPES[encoding].itemsize


def default_ranges(dims: int) -> np.ndarray:
    """(2, dims) float32 calibration ranges of -1..+1: the bounds of any unit-vector component."""
    ranges = np.empty((2, dims), dtype=np.float32)
    ranges[0] = -1.0
    ranges[1] = 1.0
    return ranges


def truncate_and_renormalize(matrix: np.ndarray, dims: int) -> np.ndarray:
    """Keep the first ``dims`` columns and L2-normalize each row (Matryoshka truncation).

    Truncated Matryoshka prefixes are not unit length; renormalizing makes dot product equal
    cosine again. Always returns a new C-contiguous float32 array; all-zero rows stay zero
    (no division by zero, no NaN).
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D (n, d) matrix, got shape {matrix.shape}")
    full = matrix.shape[1]
    if not 1 <= dims <= full:
        raise ValueError(f"dimensions must be in 1..{full}, got {dims}")
    out = np.array(matrix[:, :dims], dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def quantize(matrix: np.ndarray, encoding: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize float vectors as sentence-transformers ``quantize_embeddings`` does.

    - ``float32`` / ``float16``: a cast.
    - ``uint8``: ``floor((x - start) / step)`` clipped to 0..255 with ``start = ranges[0]`` and
      ``step = (ranges[1] - ranges[0]) / 255`` (a zero step counts as 1); ``int8`` is the same
      minus 128. ``ranges`` is a (2, dims) array of per-dimension min/max; None means -1..+1.
    - ``binary``: sign bits (x > 0) packed 8 per byte MSB first, minus 128, as int8;
      ``ubinary``: the packed bytes as uint8. ``dims`` must be a multiple of 8.

    Out-of-range values saturate at 0/255 (-128/127 for int8) rather than wrapping around on
    the integer cast. This is the one deliberate difference from a plain ``astype`` (and from
    sentence-transformers releases before clipping was added; the installed release clips too),
    and it only affects values outside the calibration range. The arithmetic is done in float32
    in the same order as sentence-transformers so results are byte-identical.
    """
    _check_encoding(encoding)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D (n, d) matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(f"vectors to quantize must be floating point, got {matrix.dtype}")
    dims = matrix.shape[1]

    if encoding == "float32":
        return matrix.astype(np.float32)
    if encoding == "float16":
        return matrix.astype(np.float16)

    if encoding in _PACKED:
        _check_packable(dims)
        packed = np.packbits(matrix > 0, axis=-1)
        if encoding == "ubinary":
            return packed
        return (packed - 128).astype(np.int8)

    # int8 / uint8
    if ranges is None:
        ranges = default_ranges(dims)
    ranges = np.asarray(ranges)
    if ranges.shape != (2, dims):
        raise ValueError(f"ranges must have shape (2, {dims}), got {ranges.shape}")
    ranges = ranges.astype(np.float32, copy=False)
    starts = ranges[0, :]
    steps = (ranges[1, :] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    levels = np.clip(np.floor((matrix - starts) / steps), 0, 255)
    if encoding == "uint8":
        return levels.astype(np.uint8)
    return (levels - 128).astype(np.int8)


def encode_rows(quantized: np.ndarray) -> list[bytes]:
    """Split an (n, k) array into n little-endian byte strings, one per ``Embedding.data``.

    One ``tobytes`` of the whole array then byte slicing: no per-element Python work, which
    matters for large document batches.
    """
    quantized = np.asarray(quantized)
    if quantized.ndim != 2:
        raise ValueError(f"expected a 2-D (n, k) array, got shape {quantized.shape}")
    little = quantized.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(quantized.astype(little, copy=False))
    n = arr.shape[0]
    width = arr.shape[1] * arr.itemsize
    if width == 0:
        return [b""] * n
    buf = arr.tobytes()
    return [buf[i : i + width] for i in range(0, n * width, width)]
