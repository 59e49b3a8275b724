"""Score query students against the teacher on the multi-domain evaluation suite.

The question is the one the asymmetric split stands on: does a query embedded by the small
student retrieve the teacher's documents nearly as well as the teacher's own query vector? For
every task of the suite (``evaluation/suite.py``) and their macro average, at every Matryoshka
dim and as float32, int8 (the space's calibration) and binary, it scores teacher→teacher,
student→teacher (what the service does) and student→student, with teacher agreement@10 (the
share of the teacher's own top 10 at that setting that the student also ranks in its top 10).

Several students are scored in one run against one set of teacher vectors (cached), so the
frontier (depth, speed, quality) is measured side by side. Ratios are of macro averages:
macro(student→teacher) / macro(teacher→teacher) at the same dims and encoding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aegis_lab.evaluation.metrics import evaluate_pair
from aegis_lab.evaluation.retrieval import ENCODINGS, score_vectors

__all__ = ["Candidate", "evaluate_suite", "frontier_rows", "macro_rows", "ratio"]

PAIRS = (("teacher", "teacher"), ("student", "teacher"), ("student", "student"))
METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "teacher_agreement_at_10")


@dataclass(frozen=True)
class Candidate:
    """A query model to score: a name for the tables and a model spec (dir or builtin).

    ``documents``: also embed the documents with it (student→student rows). The default
    student needs them (its target compares the two); a frontier probe can skip them, which
    saves most of its cost (documents are long, queries short).
    """

    name: str
    spec: str
    documents: bool = True


def _embedder(spec: str, backend: str, threads: int | None) -> Any:
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.resolve import resolve_model

    return Embedder(resolve_model(spec), backend=backend, threads=threads)


def _fast_backend() -> str:
    from aegis_serve.models.onnx_runtime import onnx_available

    return "onnx" if onnx_available() else "torch"


def parameter_count(model: Any) -> int:
    """Weights of the transformer plus any Dense head (what one forward pass touches)."""
    total = sum(p.numel() for p in model.model.parameters())
    return total + sum(p.numel() for layer, _ in model.dense for p in layer.parameters())


def single_query_p50_ms(model: Any, queries: Sequence[str], n: int = 200) -> float:
    """Median wall time of embedding one query at a time (after a warm-up)."""
    texts = list(queries)[: max(1, n)]
    for text in texts[:10]:
        model.embed([text], prompt_name="query" if "query" in model.prompts else None)
    times = []
    for text in texts:
        t0 = time.perf_counter()
        model.embed([text], prompt_name="query" if "query" in model.prompts else None)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _rows_for(
    task: str,
    qm: str,
    dm: str,
    qv: np.ndarray,
    dv: np.ndarray,
    relevant: Sequence[Sequence[int]],
    dims: Sequence[int],
    calibration: dict[int, np.ndarray],
    reference: dict[tuple[int, str], np.ndarray] | None,
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], np.ndarray]]:
    """Rows of one query/document model pair on one task at every dim and encoding, and the
    top-10 lists (the teacher's become the agreement reference)."""
    rows, tops = [], {}
    for dim in dims:
        for enc in ENCODINGS:
            ranges = calibration.get(dim)
            ref = None if reference is None else reference[(dim, enc)]
            metrics, ranked = evaluate_pair(
                score_vectors(qv, dim, enc, ranges), score_vectors(dv, dim, enc, ranges),
                relevant, ref,
            )  # fmt: skip
            if reference is None:
                metrics["teacher_agreement_at_10"] = 1.0
            tops[(dim, enc)] = ranked
            rows.append({"task": task, "query_model": qm, "document_model": dm,
                         "dimensions": dim, "encoding": enc, **metrics})  # fmt: skip
    return rows, tops


def macro_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (query model, document model, dims, encoding): the mean of each metric over tasks."""
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["task"] == "macro":
            continue
        key = (r["query_model"], r["document_model"], r["dimensions"], r["encoding"])
        groups.setdefault(key, []).append(r)
    out = []
    for (qm, dm, dim, enc), group in groups.items():
        row = {"task": "macro", "query_model": qm, "document_model": dm, "dimensions": dim,
               "encoding": enc, "tasks": len(group)}  # fmt: skip
        for metric in METRICS:
            values = [r[metric] for r in group if metric in r]
            if values:
                row[metric] = float(np.mean(values))
        out.append(row)
    return out


def _find(rows: Sequence[dict[str, Any]], task: str, qm: str, dm: str, dim: int, enc: str) -> float:
    for r in rows:
        key = (r["task"], r["query_model"], r["document_model"], r["dimensions"], r["encoding"])
        if key == (task, qm, dm, dim, enc):
            return float(r["ndcg_at_10"])
    raise KeyError((task, qm, dm, dim, enc))


def ratio(rows: Sequence[dict[str, Any]], student: str, dim: int, enc: str) -> float:
    """macro(student→teacher) / macro(teacher→teacher) nDCG@10 at the same dims and encoding."""
    st = _find(rows, "macro", student, "teacher", dim, enc)
    return st / _find(rows, "macro", "teacher", "teacher", dim, enc)


def frontier_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """`student_frontier.json` rows: every candidate and the teacher, ratios and speed."""
    rows, full = result["rows"], result["dims"][0]
    out = []
    for info in result["candidates"]:
        name = info["name"]
        is_teacher = name == "teacher"
        out.append({
            "student": name,
            "spec": info["spec"],
            "model_id": info["model_id"],
            "layers": info["layers"],
            "params": info["params"],
            "p50_ms": info["p50_ms"],
            "p50_vs_teacher": info["p50_ms"] / result["teacher"]["p50_ms"],
            "ndcg_ratio_full": 1.0 if is_teacher else ratio(rows, name, full, "float32"),
            "ndcg_ratio_256": 1.0 if is_teacher else ratio(rows, name, 256, "float32"),
            "ndcg_ratio_int8": 1.0 if is_teacher else ratio(rows, name, full, "int8"),
            "ndcg_ratio_binary": 1.0 if is_teacher else ratio(rows, name, full, "binary"),
            "macro_ndcg_student_teacher": _find(
                rows, "macro", "teacher" if is_teacher else name, "teacher", full, "float32"
            ),
            "macro_ndcg_student_student": None if is_teacher or not info["documents"] else _find(
                rows, "macro", name, name, full, "float32"
            ),
        })  # fmt: skip
    return out


def _task_info(task: Any) -> dict[str, Any]:
    return {
        "name": task.name,
        "description": task.description,
        "source": task.source,
        "query_kind": task.query_kind,
        "queries": len(task.queries),
        "documents": len(task.documents),
        "notes": task.notes,
    }


def evaluate_suite(
    candidates: Sequence[Candidate],
    document_model: str = "builtin:document",
    split: str = "test",
    size: str = "full",
    tasks: Sequence[str] | None = None,
    threads: int | None = None,
    timing_queries: int = 200,
    progress: bool = True,
    backend: str = "auto",
) -> dict[str, Any]:
    """Score every candidate (and the teacher as a query encoder) on the suite, on ``backend``
    (auto: ONNX Runtime when installed, what the query pool serves with)."""
    from aegis_lab.embedding_cache import embed_cached
    from aegis_lab.evaluation.retrieval import _space_calibration
    from aegis_lab.evaluation.suite import load_suite
    from aegis_serve.models.resolve import resolve_model

    started = time.perf_counter()
    suite = load_suite(split, size, list(tasks) if tasks else None)
    backend = _fast_backend() if backend == "auto" else backend
    teacher = _embedder(document_model, backend, threads)
    dims = list(teacher.space.matryoshka_dims)
    calibration, cal_source = _space_calibration([resolve_model(document_model)], dims)
    timing_texts = [q for task in suite for q in task.queries[:40]]
    rows: list[dict[str, Any]] = []
    refs: dict[str, dict[tuple[int, str], np.ndarray]] = {}
    teacher_docs: dict[str, np.ndarray] = {}
    for task in suite:
        t_q = embed_cached(teacher, task.queries, "query", progress)
        t_d = embed_cached(teacher, task.documents, "document", progress)
        teacher_docs[task.name] = t_d
        task_rows, refs[task.name] = _rows_for(
            task.name, "teacher", "teacher", t_q, t_d, task.relevant, dims, calibration, None
        )
        rows.extend(task_rows)
    teacher_info = {
        "name": "teacher", "spec": document_model, "model_id": teacher.space.model_id,
        "space_id": teacher.space.space_id, "layers": teacher.num_layers,
        "params": parameter_count(teacher),
        "p50_ms": single_query_p50_ms(teacher, timing_texts, timing_queries), "documents": True,
    }  # fmt: skip
    del teacher
    infos = [teacher_info]
    for cand in candidates:
        student = _embedder(cand.spec, backend, threads)
        if student.space.space_id != teacher_info["space_id"]:
            raise ValueError(
                f"{cand.name} ({cand.spec}) writes into {student.space.space_id}, the teacher "
                f"into {teacher_info['space_id']}: not comparable"
            )
        for task in suite:
            s_q = embed_cached(student, task.queries, "query", progress)
            against = [("teacher", teacher_docs[task.name])]
            if cand.documents:
                against.append((cand.name, embed_cached(student, task.documents, "document",
                                                        progress)))  # fmt: skip
            for dm, dv in against:
                task_rows, _ = _rows_for(task.name, cand.name, dm, s_q, dv, task.relevant,
                                         dims, calibration, refs[task.name])  # fmt: skip
                rows.extend(task_rows)
        infos.append({
            "name": cand.name, "spec": cand.spec, "model_id": student.space.model_id,
            "space_id": student.space.space_id, "layers": student.num_layers,
            "params": parameter_count(student),
            "p50_ms": single_query_p50_ms(student, timing_texts, timing_queries),
            "documents": cand.documents,
        })  # fmt: skip
        del student
    rows.extend(macro_rows(rows))
    return {
        "split": split,
        "size": size,
        "tasks": [_task_info(t) for t in suite],
        "dims": dims,
        "backend": backend,
        "threads": threads,
        "teacher": teacher_info,
        "candidates": infos,
        "calibration": {"source": cal_source, "dims": sorted(calibration, reverse=True)},
        "rows": rows,
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def student_rows(result: dict[str, Any], student: str) -> list[dict[str, Any]]:
    """The default student's rows in the alignment report's schema: query model `student`."""
    out = []
    for r in result["rows"]:
        if r["query_model"] == "teacher":
            out.append(dict(r))
        elif r["query_model"] == student:
            dm = "student" if r["document_model"] == student else r["document_model"]
            out.append({**r, "query_model": "student", "document_model": dm})
    return out
