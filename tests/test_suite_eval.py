"""The suite evaluation: per-task and macro rows, ratios, the frontier and its report files.

Real models at tiny size (random 2-layer BERTs in one declared space) and two small tasks
standing in for the suite, so every number can be reasoned about: a student that is the teacher
scores exactly the teacher's rows (ratio 1.0, agreement 1.0).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_distill import WORDS, tiny_st_dir

from aegis_lab.evaluation import suite_eval
from aegis_lab.evaluation.suite_eval import Candidate, evaluate_suite, macro_rows
from aegis_lab.evaluation.suite_report import write_suite_report

SPACE = {
    "space_id": "tiny-teacher/48",
    "model_id": "tiny-teacher",
    "matryoshka_dims": [48, 256, 16],
}


class FakeTask:
    def __init__(self, name: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.name, self.description, self.source = name, f"{name} task", "test"
        self.query_kind, self.notes, self.split = "question", "", "test"
        self.documents = [" ".join(rng.choice(WORDS, size=8)) for _ in range(30)]
        self.queries = [" ".join(d.split()[:3]) for d in self.documents[:10]]
        self.relevant = [[i] for i in range(10)]


@pytest.fixture
def models(tmp_path: Path, student_dir: Path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    # The report checks a 256-dim target, so the tiny space must offer 256 dims.
    space = {"space_id": "tiny/256", "model_id": "tiny-teacher", "matryoshka_dims": [256, 64]}
    teacher = tiny_st_dir(tmp_path / "teacher", student_dir, 256, 0, space)
    same = tmp_path / "same"
    shutil.copytree(teacher, same)
    other = tiny_st_dir(tmp_path / "other", student_dir, 256, 3, {**space, "model_id": "other"})
    monkeypatch.setattr(
        "aegis_lab.evaluation.suite.load_suite",
        lambda split, size, tasks=None: [FakeTask("alpha", 1), FakeTask("beta", 2)],
    )
    return teacher, same, other


def test_macro_rows_average_each_metric_over_tasks() -> None:
    rows = [
        {"task": t, "query_model": "s", "document_model": "teacher", "dimensions": 8,
         "encoding": "float32", "ndcg_at_10": v, "recall_at_10": v, "mrr_at_10": v,
         "teacher_agreement_at_10": 1.0}
        for t, v in (("a", 0.2), ("b", 0.6))
    ]  # fmt: skip
    (macro,) = macro_rows(rows)
    assert macro["task"] == "macro" and macro["tasks"] == 2
    assert macro["ndcg_at_10"] == pytest.approx(0.4)


def test_suite_rows_frontier_and_report(models, tmp_path: Path) -> None:
    teacher, same, other = models
    result = evaluate_suite(
        [Candidate("same", str(same)), Candidate("other", str(other), documents=False)],
        str(teacher), timing_queries=5, progress=False, backend="torch",
    )  # fmt: skip
    rows = result["rows"]
    tasks = {r["task"] for r in rows}
    assert tasks == {"alpha", "beta", "macro"}
    per = 2 * len(result["dims"]) * 3  # tasks × dims × encodings
    assert len([r for r in rows if r["query_model"] == "teacher"]) == per + per // 2
    # A student with the teacher's weights is the teacher: same rows, full agreement.
    for r in rows:
        if r["query_model"] == "same" and r["document_model"] == "teacher":
            twin = next(
                x for x in rows
                if (x["task"], x["query_model"], x["dimensions"], x["encoding"])
                == (r["task"], "teacher", r["dimensions"], r["encoding"])
            )  # fmt: skip
            assert r["ndcg_at_10"] == pytest.approx(twin["ndcg_at_10"], abs=1e-6)
            assert r["teacher_agreement_at_10"] == pytest.approx(1.0)
    assert suite_eval.ratio(rows, "same", 256, "float32") == pytest.approx(1.0)
    # A probe without documents: student->teacher rows only.
    assert {r["document_model"] for r in rows if r["query_model"] == "other"} == {"teacher"}

    out = write_suite_report(
        result, "same", "aegis-lab eval --suite", tmp_path / "alignment.md",
        tmp_path / "results" / "alignment.json", tmp_path / "results" / "student_frontier.json",
    )  # fmt: skip
    frontier = json.loads((tmp_path / "results" / "student_frontier.json").read_text())["rows"]
    assert [f["student"] for f in frontier] == ["teacher", "same", "other"]
    keys = {"student", "layers", "params", "p50_ms", "ndcg_ratio_full", "ndcg_ratio_256",
            "ndcg_ratio_int8", "ndcg_ratio_binary"}  # fmt: skip
    assert all(keys <= set(f) for f in frontier)
    assert frontier[1]["ndcg_ratio_full"] == pytest.approx(1.0) and frontier[1]["layers"] == 2
    assert frontier[2]["macro_ndcg_student_student"] is None
    payload = json.loads((tmp_path / "results" / "alignment.json").read_text())
    assert {r["query_model"] for r in payload["rows"]} == {"teacher", "student"}
    assert any(r["task"] == "macro" for r in payload["rows"])
    assert {"query_model", "document_model", "dimensions", "encoding", "ndcg_at_10"} <= set(
        payload["rows"][0]
    )
    assert out["targets"][0]["met"]  # the student is the teacher: 100 %
    md = (tmp_path / "alignment.md").read_text()
    assert "## Frontier" in md and "| alpha |" in md and "| macro |" in md
    assert (tmp_path / "results" / "student_frontier.png").stat().st_size > 1000


def test_a_student_of_another_space_is_refused(models, tmp_path: Path, student_dir) -> None:
    teacher, _, _ = models
    alien = tiny_st_dir(tmp_path / "alien", student_dir, 256, 4,
                        {"space_id": "elsewhere/256", "model_id": "alien"})  # fmt: skip
    with pytest.raises(ValueError, match="writes into elsewhere/256"):
        evaluate_suite([Candidate("alien", str(alien))], str(teacher), timing_queries=2,
                       progress=False, backend="torch")  # fmt: skip
