"""Vector shaping done on the index side, numpy only.

The gateway's binary is ``packbits(x > 0)`` of the truncated vector; truncation does not
change signs, so the index can cut one full-dim float32 response to any dim and quantize it
itself: a document is embedded once however many encodings the index keeps.

int8 here is *symmetric* with one scale per index (``round(x * 127 / scale)``, clipped): a
common scale preserves cosine and dot-product ranking up to rounding, which per-dimension
ranges (the service's int8) do not; the scale is fitted once on the indexed documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Int8Codec", "pack_binary", "shape_dims"]

#: Scale = this quantile of |x| over the documents (one outlier must not coarsen every step).
SCALE_QUANTILE = 0.9999


def shape_dims(vectors: np.ndarray, dims: int) -> np.ndarray:
    """The first ``dims`` coordinates, renormalized to unit length (Matryoshka truncation)."""
    x = np.asarray(vectors, dtype=np.float32)
    if dims < x.shape[1]:
        x = x[:, :dims]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pack_binary(vectors: np.ndarray) -> np.ndarray:
    """Sign bits, 8 per byte, big-endian within a byte (as the service's ``ubinary``)."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


@dataclass(frozen=True)
class Int8Codec:
    """Symmetric int8 with one scale."""

    scale: float

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Int8Codec:
        if not len(vectors):
            return cls(1.0)
        scale = float(np.quantile(np.abs(vectors), SCALE_QUANTILE))
        return cls(scale if scale > 0 else 1.0)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        q = np.rint(np.asarray(vectors, dtype=np.float32) * (127.0 / self.scale))
        return np.clip(q, -127, 127).astype(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float32) * (self.scale / 127.0)
