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

__all__ = ["Int8Codec", "fit_rotation", "pack_binary", "project", "shape_dims"]

#: Scale = this quantile of |x| over the documents (one outlier must not coarsen every step).
SCALE_QUANTILE = 0.9999


def shape_dims(vectors: np.ndarray, dims: int) -> np.ndarray:
    """The first ``dims`` coordinates, renormalized to unit length (Matryoshka truncation)."""
    x = np.asarray(vectors, dtype=np.float32)
    if dims < x.shape[1]:
        x = x[:, :dims]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


#: Documents a rotation is fitted on, at most (a seeded sample beyond that).
ROTATION_SAMPLE = 100_000


def fit_rotation(documents: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """A (full, dims) orthonormal projection for the first stage: the documents' top ``dims``
    principal directions, mixed by a random orthogonal matrix.

    Why: the first dims of a model not trained for Matryoshka truncation carry far less than
    its top principal components (the built-in teacher's first 256 dims rank at ~80 % of its
    768, its top 256 components at ~99 %); and one sign bit per component wastes bits on the
    low-variance ones, which the random mix evens out (PCA-RR, the usual binary-hashing
    baseline). Dot products within the kept subspace are unchanged by the mix, so float32 and
    int8 storage use the same projection. Fitted on the indexed documents only: no labels."""
    docs = np.asarray(documents, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if len(docs) > ROTATION_SAMPLE:
        docs = docs[rng.choice(len(docs), ROTATION_SAMPLE, replace=False)]
    centered = docs.astype(np.float64) - docs.mean(axis=0)
    _, vectors = np.linalg.eigh(centered.T @ centered)
    top = vectors[:, ::-1][:, :dims]
    mix, _ = np.linalg.qr(rng.standard_normal((dims, dims)))
    return (top @ mix).astype(np.float32)


def project(vectors: np.ndarray, rotation: np.ndarray | None, dims: int) -> np.ndarray:
    """Unit vectors of ``dims`` for the first stage: the rotation's projection when the index
    has one, else the first ``dims`` coordinates (the service's Matryoshka truncation)."""
    if rotation is None:
        return shape_dims(vectors, dims)
    return shape_dims(np.asarray(vectors, dtype=np.float32) @ rotation, dims)


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
