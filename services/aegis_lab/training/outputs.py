"""What a distillation run leaves in its output directory, written once training is over.

The student directory (which the encoder service loads), the int8 calibration of the teacher's
space, the loss plot and ``training_summary.json``; ``training_log.jsonl`` is written by the
loop as it goes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from aegis_lab.canaries import write_canaries
from aegis_lab.evaluation.retrieval import compute_calibration
from aegis_lab.training.student_model import StudentModel, write_student_dir
from aegis_serve.models.st_dir import CALIBRATION_FILE, write_json

__all__ = ["write_outputs"]


def write_outputs(
    out: Path,
    model: StudentModel,
    student_dir: Path,
    space: dict[str, Any],
    prompts: dict[str, str],
    rows: list[dict[str, Any]],
    run: dict[str, Any],
    *,
    calibration_vectors: np.ndarray | None,
    dev_info: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Write the student, calibration (from ``calibration_vectors``, the teacher's vectors of
    the corpus, when given), loss plot and summary into ``out``; returns the summary.

    ``run`` holds the summary's leading facts (config ... train_s); this adds the total time,
    the validation results, calibration, dev and the command line after them.
    """
    model.eval()
    write_student_dir(model, student_dir, out, space, prompts)
    calib_info: dict[str, Any] = {}
    if calibration_vectors is not None:
        dims_all = space["matryoshka_dims"]
        cal = {"space_id": space["space_id"], **compute_calibration(calibration_vectors, dims_all)}
        write_json(out / CALIBRATION_FILE, cal)
        calib_info = {
            "source": "teacher embeddings of the distillation corpus",
            "n": len(calibration_vectors),
        }
    write_canaries(out, "query")  # the gateway checks replicas of this student by them
    _plot(rows, out / "loss.png")
    val_rows = [r for r in rows if r["kind"] == "val"]
    summary = {
        **run,
        "total_s": round(time.perf_counter() - started, 1),
        "val_loss_first": val_rows[0]["loss"] if val_rows else None,
        "val_loss_last": val_rows[-1]["loss"] if val_rows else None,
        "val_cos_last": val_rows[-1]["cos"] if val_rows else None,
        "calibration": calib_info,
        "dev": dev_info,
        "command": "aegis-lab " + " ".join(sys.argv[1:]),
    }
    write_json(out / "training_summary.json", summary)
    return summary


def _plot(log_rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in log_rows if r["kind"] == "train"]
    val = [r for r in log_rows if r["kind"] == "val"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=0.8)
    if val:
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("Σ_d (1 - cos) + λ·MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("student → teacher distillation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
