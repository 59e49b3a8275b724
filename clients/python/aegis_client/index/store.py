"""The index itself: quantized document vectors in usearch, optional int8 rescoring on disk.

Why usearch rather than FAISS: it stores int8 (``i8``) and packed bits (``b1``, Hamming)
natively in both its exact (SIMD brute-force) search and its HNSW graph, takes the vectors the
service returns as they are, and memory-maps saved indexes; FAISS keeps binary vectors in a
separate index family (``IndexBinary*``) and offers int8 only through its own scalar quantizer,
so an int8 vector from elsewhere cannot be stored as is.

Search is in one or two stages. Stage one ranks the in-memory vectors (``storage`` at
``dims``): float32 by dot product, int8 by cosine, binary by Hamming distance. With
``rescore``, stage one returns ``k * rescore_multiplier`` candidates and stage two re-ranks them
by the float query's dot product with the documents' full-dim int8 vectors, which stay on disk
(memory-mapped): only the candidates' rows are read. Scores are "higher is better": dot
product / cosine, or ``1 - 2 * hamming / dims`` for binary without rescoring.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aegis_client.index.codecs import Int8Codec, fit_rotation, pack_binary, project, shape_dims

try:
    from usearch.index import Index, MetricKind
    from usearch.index import search as exact_search
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the index needs usearch: pip install 'aegis-serve[index]'") from exc

__all__ = ["DEFAULT_RESCORE_MULTIPLIER", "AsymmetricIndex", "IndexSpec", "SearchResult"]

STORAGES = ("float32", "int8", "binary")
KINDS = ("flat", "hnsw")
#: Candidates per result for rescoring. sentence-transformers' quantization guide uses 4 with
#: Matryoshka-trained models; the built-in teacher's 256 bits need 10 to keep 97 % (dev split,
#: docs/rag.md), so 10 is the default here.
DEFAULT_RESCORE_MULTIPLIER = 10
FORMAT = 1
_METRICS = {"float32": MetricKind.IP, "int8": MetricKind.Cos, "binary": MetricKind.Hamming}
_USEARCH_DTYPES = {"float32": "f32", "int8": "i8", "binary": "b1"}
_RESCORE_FLOATS = 4_000_000  # candidate values decoded at once (16 MB): bounds the memory


@dataclass(frozen=True)
class IndexSpec:
    """How documents are stored: ``storage`` at ``dims`` (0 = full) in a ``flat`` (exact) or
    ``hnsw`` (graph) index, with or without full-dim int8 rescoring vectors on disk."""

    storage: str = "binary"
    dims: int = 0
    rescore: bool = True
    kind: str = "flat"
    # Candidates per result for rescoring (search may override).
    rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER
    # Project onto a rotation fitted on the documents (codecs.fit_rotation) instead of taking
    # the first dims; unused for float32 / int8 at full dims (they rank the same either way).
    rotate: bool = True
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"storage {self.storage!r} is not one of {list(STORAGES)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {list(KINDS)}")
        if self.rescore_multiplier < 1:
            raise ValueError(f"rescore_multiplier must be >= 1, got {self.rescore_multiplier}")
        if self.dims < 0 or (self.storage == "binary" and self.dims % 8):
            raise ValueError(
                f"dims must be >= 0 (0 = full), a multiple of 8 for binary: {self.dims}"
            )

    def label(self) -> str:
        """E.g. ``flat binary@256 rotated + int8 rescore of 4k``."""
        rescore = f" + int8 rescore of {self.rescore_multiplier}k" if self.rescore else ""
        rotated = " rotated" if self.rotate and (self.storage == "binary" or self.dims) else ""
        return f"{self.kind} {self.storage}@{self.dims or 'full'}{rotated}{rescore}"

    def rotates(self, full_dims: int) -> bool:
        """Whether an index of ``full_dims`` vectors fits a rotation (float32 / int8 at full
        dims rank the same with or without one)."""
        return self.rotate and (self.storage == "binary" or 0 < self.dims < full_dims)


@dataclass(frozen=True)
class SearchResult:
    """Per query: the ``k`` best document keys (row numbers) and their scores, best first."""

    keys: np.ndarray  # (queries, k) int64
    scores: np.ndarray  # (queries, k) float32


class AsymmetricIndex:
    """Documents' vectors in one space, searched with query vectors of the same space."""

    def __init__(
        self,
        spec: IndexSpec,
        full_dims: int,
        dims: int,
        codec: Int8Codec | None,
        rescore_codec: Int8Codec | None,
        meta: dict[str, Any] | None = None,
        rotation: np.ndarray | None = None,
    ) -> None:
        self.spec = spec
        self.full_dims = full_dims
        self.dims = dims
        self.codec = codec  # int8 storage
        self.rescore_codec = rescore_codec
        self.rotation = rotation  # (full_dims, dims) projection, or None: the first dims
        self.meta = dict(meta or {})  # space_id, model, anything the builder records
        self.count = 0
        self._flat: np.ndarray | None = None
        self._graph: Index | None = None
        self._rescore: np.ndarray | None = None

    # ------------------------------------------------------------------- build
    @classmethod
    def from_vectors(
        cls, documents: np.ndarray, spec: IndexSpec, meta: dict[str, Any] | None = None
    ) -> AsymmetricIndex:
        """An index of full-dim float32 document vectors (rows are keys 0..n-1); the int8
        scales are fitted on these documents."""
        docs = np.asarray(documents, dtype=np.float32)
        if docs.ndim != 2 or not docs.shape[1]:
            raise ValueError(f"documents must be a (n, dims) matrix, got shape {docs.shape}")
        full = docs.shape[1]
        dims = spec.dims or full
        if dims > full:
            raise ValueError(f"dims={dims} is more than the vectors' {full}")
        rotation = fit_rotation(docs, dims) if spec.rotates(full) and len(docs) else None
        shaped = project(docs, rotation, dims)
        unit = shape_dims(docs, full) if spec.rescore else None
        codec = Int8Codec.fit(shaped) if spec.storage == "int8" else None
        rescore = Int8Codec.fit(unit) if unit is not None else None
        index = cls(spec, full, dims, codec, rescore, meta, rotation)
        index._append(shaped, unit)  # projected once: fitting and storing share it
        return index

    def _stored(self, vectors: np.ndarray) -> np.ndarray:
        """Full-dim float vectors as this index stores them (also how queries are shaped)."""
        return self._quantized(project(vectors, self.rotation, self.dims))

    def _quantized(self, shaped: np.ndarray) -> np.ndarray:
        """Projected unit vectors in this index's storage encoding."""
        if self.spec.storage == "binary":
            return pack_binary(shaped)
        if self.spec.storage == "int8":
            assert self.codec is not None
            return self.codec.encode(shaped)
        return shaped

    def add(self, documents: np.ndarray) -> np.ndarray:
        """Append documents (full-dim float32); returns their keys. Later documents use the
        scales fitted at build time (values beyond them are clipped)."""
        docs = np.asarray(documents, dtype=np.float32)
        if docs.ndim != 2 or docs.shape[1] != self.full_dims:
            raise ValueError(f"documents must be (n, {self.full_dims}), got {docs.shape}")
        unit = shape_dims(docs, self.full_dims) if self.rescore_codec is not None else None
        return self._append(project(docs, self.rotation, self.dims), unit)

    def _append(self, shaped: np.ndarray, unit: np.ndarray | None) -> np.ndarray:
        """Store documents given as projected unit vectors (`shaped`) and, when the index
        rescores, as full-dim unit vectors (`unit`); returns their keys."""
        n = len(shaped)
        keys = np.arange(self.count, self.count + n, dtype=np.int64)
        stored = self._quantized(shaped)
        if self.spec.kind == "flat":
            self._flat = stored if self._flat is None else np.concatenate([self._flat, stored])
        else:
            if self._graph is None:
                self._graph = Index(
                    ndim=self.dims,
                    metric=_METRICS[self.spec.storage],
                    dtype=_USEARCH_DTYPES[self.spec.storage],
                    connectivity=self.spec.connectivity,
                    expansion_add=self.spec.expansion_add,
                    expansion_search=self.spec.expansion_search,
                )
            if n:
                self._graph.add(keys, stored)
        if self.rescore_codec is not None and unit is not None:
            codes = self.rescore_codec.encode(unit)
            old = self._rescore
            self._rescore = codes if old is None else np.concatenate([np.asarray(old), codes])
        self.count += n
        return keys

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        rescore_multiplier: int | None = None,
        threads: int = 0,
    ) -> SearchResult:
        """The ``k`` best documents for each full-dim float32 query vector; rescoring looks at
        ``k * rescore_multiplier`` candidates (default: the spec's)."""
        multiplier = (
            self.spec.rescore_multiplier if rescore_multiplier is None else rescore_multiplier
        )
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.full_dims:
            raise ValueError(f"queries must be (n, {self.full_dims}) float vectors, got {q.shape}")
        if k < 1 or multiplier < 1:
            raise ValueError("k and rescore_multiplier must be >= 1")
        k = min(k, self.count)
        if not k:
            empty = np.zeros((len(q), 0))
            return SearchResult(empty.astype(np.int64), empty.astype(np.float32))
        rescoring = self.rescore_codec is not None
        count = min(self.count, k * multiplier) if rescoring else k
        keys, scores = self._first_stage(q, count, threads)
        if rescoring:
            keys, scores = self._rescored(q, keys, k)
        return SearchResult(keys, scores)

    def _first_stage(
        self, q: np.ndarray, count: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        stored = self._stored(q)
        metric = _METRICS[self.spec.storage]
        if self._flat is not None:
            matches = exact_search(self._flat, stored, count, metric, exact=True, threads=threads)
        else:
            assert self._graph is not None
            matches = self._graph.search(stored, count, threads=threads)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(q), -1)
        distances = np.asarray(matches.distances, dtype=np.float32).reshape(len(q), -1)
        # usearch distances: IP = 1 - dot, Cos = 1 - cosine, Hamming = differing bits.
        binary = self.spec.storage == "binary"
        scores = 1 - 2 * distances / self.dims if binary else 1 - distances
        # An HNSW search may find fewer than `count`: usearch pads with out-of-range keys.
        bad = (keys < 0) | (keys >= self.count)
        return np.where(bad, -1, keys), np.where(bad, -np.inf, scores).astype(np.float32)

    def _rescored(self, q: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._rescore is not None and self.rescore_codec is not None
        full = shape_dims(q, self.full_dims)
        out_keys = np.empty((len(q), k), dtype=np.int64)
        out_scores = np.empty((len(q), k), dtype=np.float32)
        chunk = max(1, _RESCORE_FLOATS // (keys.shape[1] * self.full_dims))
        for start in range(0, len(q), chunk):
            block = keys[start : start + chunk]
            safe = np.where(block < 0, 0, block)
            rows = self.rescore_codec.decode(self._rescore[safe.ravel()])
            rows = rows.reshape(*safe.shape, self.full_dims)
            scores = np.einsum("qcd,qd->qc", rows, full[start : start + len(block)])
            scores = np.where(block < 0, -np.inf, scores)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            out_keys[start : start + len(block)] = np.take_along_axis(block, order, 1)
            out_scores[start : start + len(block)] = np.take_along_axis(scores, order, 1)
        return out_keys, out_scores

    # ------------------------------------------------------------------ sizes
    @property
    def memory_bytes(self) -> int:
        """Bytes of the in-memory index (vectors, plus the graph for HNSW)."""
        if self._flat is not None:
            return int(self._flat.nbytes)
        return int(self._graph.serialized_length) if self._graph is not None else 0

    @property
    def fixed_bytes(self) -> int:
        """Bytes held whatever the number of documents (the rotation matrix)."""
        return int(self.rotation.nbytes) if self.rotation is not None else 0

    @property
    def rescore_bytes(self) -> int:
        """Bytes of the full-dim int8 rescoring vectors (on disk once saved)."""
        return int(np.asarray(self._rescore).nbytes) if self._rescore is not None else 0

    # ------------------------------------------------------------- save / load
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index to ``directory`` (created): manifest.json, the vectors or the graph,
        and the rescoring vectors."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self._flat is not None:
            np.save(out / "vectors.npy", self._flat)
        elif self._graph is not None:
            self._graph.save(str(out / "index.usearch"))
        if self._rescore is not None:
            np.save(out / "rescore_int8.npy", np.asarray(self._rescore))
        if self.rotation is not None:
            np.save(out / "rotation.npy", self.rotation)
        manifest = {
            "format": FORMAT,
            "spec": asdict(self.spec),
            "full_dims": self.full_dims,
            "dims": self.dims,
            "count": self.count,
            "int8_scale": self.codec.scale if self.codec else None,
            "rescore_scale": self.rescore_codec.scale if self.rescore_codec else None,
            "meta": self.meta,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AsymmetricIndex:
        """An index written by :meth:`save`; the rescoring vectors stay on disk (mmap)."""
        src = Path(directory)
        try:
            manifest = json.loads((src / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{src} is not an aegis index: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{src}: index format {manifest.get('format')} is not {FORMAT}")
        spec = IndexSpec(**manifest["spec"])
        codec = Int8Codec(manifest["int8_scale"]) if manifest["int8_scale"] else None
        rescore = Int8Codec(manifest["rescore_scale"]) if manifest["rescore_scale"] else None
        rotation_file = src / "rotation.npy"
        rotation = np.load(rotation_file) if rotation_file.exists() else None
        index = cls(
            spec,
            manifest["full_dims"],
            manifest["dims"],
            codec,
            rescore,
            manifest["meta"],
            rotation,
        )
        index.count = int(manifest["count"])
        if spec.kind == "flat":
            index._flat = np.load(src / "vectors.npy")
        else:
            index._graph = Index.restore(str(src / "index.usearch"))
        if rescore is not None:
            index._rescore = np.load(src / "rescore_int8.npy", mmap_mode="r")
        return index
