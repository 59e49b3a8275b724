"""Turn an ``EmbedResponse`` back into numpy arrays.

Kept separate from the transport so responses obtained any way (stream, proxy, recorded
fixtures) decode the same. The client must not import the server package, so the small
encoding table is repeated here; both follow ``embed.proto``.
"""

from __future__ import annotations

import numpy as np

from aegis.embed.v1 import embed_pb2

__all__ = ["ENCODING_NAMES", "ENCODING_VALUES", "decode_embeddings"]

#: Proto enum value -> encoding name (UNSPECIFIED means float32).
ENCODING_NAMES: dict[int, str] = {
    embed_pb2.ENCODING_UNSPECIFIED: "float32",
    embed_pb2.ENCODING_FLOAT32: "float32",
    embed_pb2.ENCODING_FLOAT16: "float16",
    embed_pb2.ENCODING_INT8: "int8",
    embed_pb2.ENCODING_UINT8: "uint8",
    embed_pb2.ENCODING_BINARY: "binary",
    embed_pb2.ENCODING_UBINARY: "ubinary",
}

#: Encoding name -> proto enum value.
ENCODING_VALUES: dict[str, int] = {
    "float32": embed_pb2.ENCODING_FLOAT32,
    "float16": embed_pb2.ENCODING_FLOAT16,
    "int8": embed_pb2.ENCODING_INT8,
    "uint8": embed_pb2.ENCODING_UINT8,
    "binary": embed_pb2.ENCODING_BINARY,
    "ubinary": embed_pb2.ENCODING_UBINARY,
}

# Wire dtype of one element of Embedding.data (little-endian, see embed.proto).
_WIRE_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "binary": np.dtype("i1"),
    "ubinary": np.dtype("u1"),
}

# Host-order result dtypes (a no-op conversion on little-endian hosts).
_RESULT_DTYPES: dict[str, type[np.generic]] = {
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "binary": np.int8,
    "ubinary": np.uint8,
}


def decode_embeddings(response: embed_pb2.EmbedResponse, unpack_bits: bool = False) -> np.ndarray:
    """Decode ``response.embeddings`` into one (n, ...) array, validating every row's size.

    Returns float32 (n, d) for float32, float16 (n, d) for float16, int8/uint8 (n, d) for
    int8/uint8, and the packed (n, d/8) int8/uint8 bytes for binary/ubinary, or with
    ``unpack_bits=True`` a (n, d) uint8 array of 0/1 sign bits (1 where the float was > 0).
    Raises ValueError when a row does not match ``response.dimensions`` / the encoding,
    because a silently mis-shaped matrix would corrupt an index.
    """
    try:
        encoding = ENCODING_NAMES[response.encoding]
    except KeyError:
        raise ValueError(
            f"response has unknown encoding enum value {response.encoding}; upgrade the client"
        ) from None
    rows = response.embeddings
    n = len(rows)
    dims = int(response.dimensions)
    if n and dims == 0:
        raise ValueError(f"response has {n} embeddings but dimensions == 0")

    if encoding == "float32":
        # Row-wise assignment into a preallocated array is the fastest path for repeated floats
        # (about 8x faster than iterating values one by one) and checks each row's length.
        matrix = np.empty((n, dims), dtype=np.float32)
        for i, row in enumerate(rows):
            values = row.values
            if len(values) != dims:
                raise ValueError(
                    f"embedding {i} has {len(values)} float values, expected dimensions={dims}"
                )
            matrix[i] = values
        return matrix

    packed = encoding in ("binary", "ubinary")
    if packed and dims % 8:
        raise ValueError(f"{encoding} response needs dimensions divisible by 8, got {dims}")
    wire = _WIRE_DTYPES[encoding]
    width = dims // 8 if packed else dims * wire.itemsize
    # bytearray.join gives a writable buffer, so the result is writable without a second copy.
    buf = bytearray().join(row.data for row in rows)
    if len(buf) != n * width:
        bad = next(i for i, row in enumerate(rows) if len(row.data) != width)
        raise ValueError(
            f"embedding {bad} has {len(rows[bad].data)} bytes of data, expected {width} "
            f"for {encoding} at dimensions={dims}"
        )
    columns = width // wire.itemsize
    matrix = np.frombuffer(buf, dtype=wire).reshape(n, columns)
    matrix = matrix.astype(_RESULT_DTYPES[encoding], copy=False)
    if not (packed and unpack_bits):
        return matrix
    as_bytes = matrix.view(np.uint8)
    if encoding == "binary":
        # binary bytes are packed - 128 as int8; adding 128 back (mod 256) flips the top bit.
        as_bytes = as_bytes ^ np.uint8(0x80)
    return np.unpackbits(as_bytes, axis=1, count=dims)
