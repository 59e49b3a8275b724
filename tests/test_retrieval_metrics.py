"""Retrieval metrics against hand-computed values, and calibration from a corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aegis_lab.evaluation.retrieval import (
    agreement_at_k,
    compute_calibration,
    evaluate_pair,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    score_vectors,
    top_k,
)

# Three queries: relevant doc at rank 2, at rank 1, and not retrieved at all.
RANKED = np.array([[3, 1, 2], [0, 2, 1], [5, 6, 7]])
RELEVANT = [1, 0, 9]


def test_ndcg_mrr_recall_hand_computed() -> None:
    # nDCG: 1/log2(3) for rank 2, 1 for rank 1, 0 for a miss (one relevant doc, IDCG = 1).
    assert ndcg_at_k(RANKED, RELEVANT, k=3) == pytest.approx((1 / math.log2(3) + 1 + 0) / 3)
    assert ndcg_at_k(RANKED, RELEVANT, k=3) == pytest.approx(0.5436432)
    assert mrr_at_k(RANKED, RELEVANT, k=3) == pytest.approx((0.5 + 1 + 0) / 3)
    assert recall_at_k(RANKED, RELEVANT, k=3) == pytest.approx(2 / 3)
    # The cut-off counts: with k=1 the rank-2 hit is gone.
    assert ndcg_at_k(RANKED, RELEVANT, k=1) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKED, RELEVANT, k=1) == pytest.approx(1 / 3)


def test_ndcg_with_several_relevant_documents() -> None:
    # Relevant {1, 2} at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4), IDCG = 1 + 1/log2(3).
    got = ndcg_at_k(np.array([[0, 1, 2]]), [[1, 2]], k=3)
    assert got == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert recall_at_k(np.array([[0, 1, 2]]), [[1, 2, 7]], k=3) == pytest.approx(2 / 3)


def test_teacher_agreement() -> None:
    assert agreement_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]), k=3) == pytest.approx(2 / 3)
    assert agreement_at_k(RANKED, RANKED, k=3) == 1.0


def test_top_k_orders_by_score_and_evaluate_pair() -> None:
    docs = np.eye(4, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0.5, 0.0], [1.0, 0.0, 0.0, 0.2]], dtype=np.float32)
    ranked = top_k(queries, docs, k=3)
    np.testing.assert_array_equal(ranked, [[1, 2, 0], [0, 3, 1]])
    metrics, _ = evaluate_pair(queries, docs, [2, 0], reference_top=ranked)
    assert metrics["mrr_at_10"] == pytest.approx((0.5 + 1) / 2)
    assert metrics["teacher_agreement_at_10"] == 1.0


def test_binary_scores_rank_like_hamming() -> None:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(5, 64)), rng.normal(size=(50, 64))
    sq, sd = score_vectors(q, 64, "binary", None), score_vectors(d, 64, "binary", None)
    hamming = ((q[:, None, :] > 0) != (d[None, :, :] > 0)).sum(axis=2)
    np.testing.assert_array_equal(sq @ sd.T, 64 - 2 * hamming)


def test_calibration_ranges_are_per_matryoshka_dim() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(200, 32)).astype(np.float32)
    cal = compute_calibration(emb, [32, 16])
    assert set(cal["ranges"]) == {"32", "16"}
    trunc = emb[:, :16] / np.linalg.norm(emb[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(cal["ranges"]["16"]["min"], trunc.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(cal["ranges"]["16"]["max"], trunc.max(axis=0), rtol=1e-6)
    # int8 with calibrated ranges loses less than with the fixed -1..+1 range.
    ranges = np.asarray([cal["ranges"]["32"]["min"], cal["ranges"]["32"]["max"]], np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    err_cal = np.abs(score_vectors(emb, 32, "int8", ranges) - unit).mean()
    err_fixed = np.abs(score_vectors(emb, 32, "int8", None) - unit).mean()
    assert err_cal < err_fixed


def test_report_json_and_markdown_carry_the_same_rows(tmp_path) -> None:
    import json

    from aegis_lab.evaluation.report import write_report

    rows = []
    for qm, dm in (("teacher", "teacher"), ("student", "teacher"), ("student", "student")):
        for dims in (768, 256):
            for enc in ("float32", "int8", "binary"):
                score = {"teacher": 0.6, "student": 0.585}[qm] * (1 if dm == "teacher" else 0.9)
                rows.append(
                    {
                        "query_model": qm,
                        "document_model": dm,
                        "dimensions": dims,
                        "encoding": enc,
                        "ndcg_at_10": score,
                        "recall_at_10": 0.7,
                        "mrr_at_10": 0.5,
                        "teacher_agreement_at_10": 1.0,
                    }
                )
    result = {
        "dataset": {"name": "toy", "n_docs": 10, "n_queries": 2},
        "models": {
            "teacher": {"model_id": "t", "space_id": "s/768"},
            "student": {"model_id": "q", "space_id": "s/768"},
        },
        "calibration": {"source": "x", "dims": [768, 256]},
        "rows": rows,
        "int8_fixed_range": [],
        "baselines": [],
    }
    md, js = tmp_path / "alignment.md", tmp_path / "results" / "alignment.json"
    write_report(result, "aegis-lab eval", md, js)
    payload = json.loads(js.read_text())
    assert payload["command"] == "aegis-lab eval" and payload["rows"] == rows
    met = {t["target"]: t["met"] for t in payload["targets"]}
    assert met["full dim, float32"] is True  # 0.585 / 0.6 = 97.5 %
    assert (tmp_path / "alignment.png").stat().st_size > 0
    assert "| student → teacher | 256 | int8 |" in md.read_text()
