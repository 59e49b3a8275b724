"""The asymmetric-space evaluation and int8 calibration (metrics: ``evaluation.metrics``).

The question the evaluation answers is whether the small query student can stand in for the
teacher on the query side: the same queries and documents are scored teacher→teacher,
student→teacher (what the service does) and student→student, at every Matryoshka dim and for
float32, int8 (calibrated) and binary vectors, as the gateway would serve them.

Embeddings are cached on disk (``aegis_lab.embedding_cache``) keyed by the
model weights and the texts, so a rerun of the report costs seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aegis_lab.evaluation.metrics import (
    agreement_at_k,
    evaluate_pair,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    top_k,
)
from aegis_serve.gateway.quantize import default_ranges, quantize, truncate_and_renormalize

__all__ = [
    "ENCODINGS",
    "agreement_at_k",
    "compute_calibration",
    "evaluate_pair",
    "load_dataset",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "run_eval",
    "score_vectors",
    "top_k",
]

ENCODINGS = ("float32", "int8", "binary")
# Default WordNet eval size: what 2 shared CPU cores can embed with the teacher in minutes.
WORDNET_SIZES = {"wordnet": (4000, 1000), "wordnet-10k": (10000, 2000)}


# ------------------------------------------------------------------------------ calibration
def compute_calibration(embeddings: np.ndarray, dims: Sequence[int]) -> dict[str, Any]:
    """``calibration.json`` content: per-dimension min/max at every Matryoshka width.

    Ranges are taken on vectors truncated and renormalized to each width, because that is what
    the gateway quantizes. Plain min/max (as sentence-transformers' ``calibration_embeddings``)
    rather than percentiles: values outside the range saturate, and with a corpus of tens of
    thousands of texts the extremes are stable enough that clipping buys little.
    """
    ranges: dict[str, Any] = {}
    emb = np.asarray(embeddings, dtype=np.float32)
    for d in sorted({int(x) for x in dims}, reverse=True):
        v = truncate_and_renormalize(emb, d)
        lo, hi = v.min(axis=0), v.max(axis=0)
        hi = np.where(hi > lo, hi, lo + 1e-6)  # load_calibration requires max > min
        ranges[str(d)] = {"min": lo.tolist(), "max": hi.tolist()}
    return {"ranges": ranges, "method": "min/max of truncated+renormalized vectors", "n": len(emb)}


# ------------------------------------------------------------------------------ scoring
def score_vectors(
    vectors: np.ndarray, dims: int, encoding: str, ranges: np.ndarray | None
) -> np.ndarray:
    """What a vector index scores for the gateway's output at ``dims`` and ``encoding``.

    float32: the unit vectors. int8: quantized with the space's ranges and read back at the
    bucket midpoints (scalar-quantization scoring, e.g. FAISS SQ8), so the dot product is the
    cosine of the dequantized vectors. binary: sign bits as ±1, so the dot product ranks
    exactly like Hamming distance.
    """
    v = truncate_and_renormalize(vectors, dims)
    if encoding == "float32":
        return v
    if encoding == "int8":
        r = default_ranges(dims) if ranges is None else np.asarray(ranges, dtype=np.float32)
        levels = quantize(v, "int8", r).astype(np.float32) + 128.0
        step = (r[1] - r[0]) / 255
        return (r[0] + (levels + 0.5) * step).astype(np.float32)
    if encoding == "binary":
        return np.where(v > 0, 1.0, -1.0).astype(np.float32)
    raise ValueError(f"unknown encoding {encoding!r}")


def _fidelity(vectors: np.ndarray, dequantized: np.ndarray, dims: int) -> float:
    """Mean cosine between float vectors and their int8 read-back: what calibration buys."""
    v = truncate_and_renormalize(vectors, dims)
    q = truncate_and_renormalize(dequantized, dims)
    return float(np.mean(np.sum(v * q, axis=1)))


# ------------------------------------------------------------------------------ dataset
def load_dataset(name: str) -> tuple[list[str], list[str], list[int], dict[str, Any]]:
    """(queries, documents, relevant doc index per query, description).

    ``wordnet`` / ``wordnet-10k``: usage example → "lemma: definition" (Debian wordnet-base),
    whose synsets ``training.corpus.load_corpus("wordnet")`` holds out. A PATH is a JSON
    file ``{"queries": [...], "documents": [...], "relevant": [...]}``.
    """
    if name in WORDNET_SIZES:
        from aegis_lab.data.wordnet import retrieval_set

        n_docs, n_queries = WORDNET_SIZES[name]
        q, d, rel = retrieval_set(n_docs=n_docs, n_queries=n_queries)
        desc = {
            "name": name,
            "source": "WordNet 3.0 (Debian wordnet-base): usage example -> 'lemma: definition'",
            "n_docs": n_docs,
            "n_queries": n_queries,
            "seed": 0,
            "held_out": "Its synsets are excluded from the wordnet distillation corpus",
        }
        return q, d, rel, desc
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"dataset {name!r}: not one of {sorted(WORDNET_SIZES)} nor a JSON file")
    raw = json.loads(path.read_text(encoding="utf-8"))
    q, d, rel = list(raw["queries"]), list(raw["documents"]), [int(r) for r in raw["relevant"]]
    return q, d, rel, {"name": str(path), "n_docs": len(d), "n_queries": len(q)}


# ------------------------------------------------------------------------------ runner
def _space_calibration(
    dirs: Sequence[Path], dims: Sequence[int]
) -> tuple[dict[int, np.ndarray], str]:
    """Ranges as the gateway picks them: the document model's first, then the query model's."""
    from aegis_serve.models.st_dir import load_calibration

    for d in dirs:
        cal = load_calibration(Path(d), tuple(dims))
        if cal:
            return cal, str(d)
    return {}, ""


def run_eval(
    query_model: str,
    document_model: str,
    dataset: str = "wordnet",
    baselines: dict[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """All rows of the alignment report (see ``report.write_report`` for the files)."""
    from aegis_lab.embedding_cache import embed_cached
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.resolve import resolve_model

    started = time.perf_counter()
    q_texts, d_texts, relevant, desc = load_dataset(dataset)
    q_dir, d_dir = resolve_model(query_model), resolve_model(document_model)
    teacher = Embedder(d_dir)
    dims = list(teacher.space.matryoshka_dims)
    t_q = embed_cached(teacher, q_texts, "query", progress)
    t_d = embed_cached(teacher, d_texts, "document", progress)
    t_info = {
        "dir": str(d_dir),
        "model_id": teacher.space.model_id,
        "space_id": teacher.space.space_id,
    }
    del teacher
    student = Embedder(q_dir)
    if student.space.space_id != t_info["space_id"]:
        raise ValueError(
            f"query model writes into {student.space.space_id}, documents into {t_info['space_id']}"
        )
    s_q = embed_cached(student, q_texts, "query", progress)
    s_d = embed_cached(student, d_texts, "document", progress)
    s_info = {
        "dir": str(q_dir),
        "model_id": student.space.model_id,
        "space_id": student.space.space_id,
    }
    del student
    calibration, cal_source = _space_calibration([d_dir, q_dir], dims)

    pairs = {
        ("teacher", "teacher"): (t_q, t_d),
        ("student", "teacher"): (s_q, t_d),
        ("student", "student"): (s_q, s_d),
    }
    rows: list[dict[str, Any]] = []
    uncalibrated: list[dict[str, Any]] = []
    for dim in dims:
        for enc in ENCODINGS:
            ranges = calibration.get(dim)
            ref_top = None
            for (qm, dm), (qv, dv) in pairs.items():
                metrics, ranked = evaluate_pair(
                    score_vectors(qv, dim, enc, ranges),
                    score_vectors(dv, dim, enc, ranges),
                    relevant,
                    ref_top,
                )
                if (qm, dm) == ("teacher", "teacher"):
                    ref_top = ranked
                    metrics["teacher_agreement_at_10"] = 1.0
                rows.append(
                    {
                        "query_model": qm,
                        "document_model": dm,
                        "dimensions": dim,
                        "encoding": enc,
                        **metrics,
                    }
                )
                if enc == "int8" and ranges is not None:
                    fixed_d = score_vectors(dv, dim, enc, None)
                    m_fixed, _ = evaluate_pair(score_vectors(qv, dim, enc, None), fixed_d, relevant)
                    m_fixed["doc_cosine_fixed"] = _fidelity(dv, fixed_d, dim)
                    calib_d = score_vectors(dv, dim, enc, ranges)
                    m_fixed["doc_cosine_calibrated"] = _fidelity(dv, calib_d, dim)
                    uncalibrated.append(
                        {"query_model": qm, "document_model": dm, "dimensions": dim, **m_fixed}
                    )
    base_rows: list[dict[str, Any]] = []
    for name, spec in (baselines or {}).items():
        b = Embedder(resolve_model(spec))
        b_q = embed_cached(b, q_texts, "query", progress)
        same_space = b.space.space_id == t_info["space_id"]
        b_d = embed_cached(b, d_texts, "document", progress)
        del b
        ref = top_k(t_q, t_d)
        if same_space:
            m, _ = evaluate_pair(truncate_and_renormalize(b_q, dims[0]), t_d, relevant, ref)
            base_rows.append(
                {
                    "query_model": name,
                    "document_model": "teacher",
                    "dimensions": dims[0],
                    "encoding": "float32",
                    **m,
                }
            )
        m, _ = evaluate_pair(
            truncate_and_renormalize(b_q, b_q.shape[1]),
            truncate_and_renormalize(b_d, b_d.shape[1]),
            relevant,
            ref,
        )
        base_rows.append(
            {
                "query_model": name,
                "document_model": name,
                "dimensions": int(b_q.shape[1]),
                "encoding": "float32",
                **m,
            }
        )
    return {
        "dataset": desc,
        "models": {"teacher": t_info, "student": s_info},
        "calibration": {"source": cal_source, "dims": sorted(calibration, reverse=True)},
        "rows": rows,
        "int8_fixed_range": uncalibrated,
        "baselines": base_rows,
        "eval_seconds": round(time.perf_counter() - started, 1),
    }
