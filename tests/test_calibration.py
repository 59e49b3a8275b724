"""The gateway quantizes int8/uint8 with the space's calibration ranges when it ships them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from aegis_client import EmbedClient
from aegis_lab.evaluation.retrieval import compute_calibration
from aegis_serve.models.embedder import Embedder
from conftest import make_space_variant

CORPUS = [
    "A river flows through the valley.",
    "The committee approved the budget on Tuesday.",
    "Cats sleep for most of the day.",
    "Quantum computers use qubits.",
    "She plays the violin in an orchestra.",
    "The bakery opens at six in the morning.",
    "Volcanoes can reshape entire islands.",
    "He repaired the bicycle with a spare chain.",
]
TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "a", "东京 🚀"]


@pytest.fixture
def calibrated(tmp_path: Path, student_dir: Path, student: Embedder) -> tuple[Embedder, dict]:
    """MiniLM declaring its own space plus calibration.json computed on a small corpus."""
    variant = make_space_variant(
        student_dir, tmp_path / "calibrated", {"space_id": "calibrated-minilm/384"}
    )
    cal = compute_calibration(student.embed(CORPUS), [384, 256, 128, 64])
    (variant / "calibration.json").write_text(json.dumps(cal))
    return Embedder(variant), cal


@pytest.mark.parametrize("dims", [0, 256, 64])
@pytest.mark.parametrize("encoding", ["int8", "uint8"])
def test_gateway_int8_uses_calibration_byte_for_byte(stack, calibrated, dims, encoding) -> None:
    embedder, cal = calibrated
    assert set(embedder.space.calibration) == {384, 256, 128, 64}
    q = stack.encoder("q", embedder, "query")
    d = stack.encoder("d", embedder, "document")
    gw = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=60) as client:
        assert client.info().calibrated
        served = client.embed(TEXTS, "document", dimensions=dims).embeddings
        got = client.embed(TEXTS, "document", dimensions=dims, encoding=encoding).embeddings
    width = dims or 384
    ranges = np.asarray([cal["ranges"][str(width)]["min"], cal["ranges"][str(width)]["max"]])
    expected = quantize_embeddings(served, encoding, ranges=ranges)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    # And it is not what the fixed -1..+1 range gives.
    fixed = quantize_embeddings(served, encoding, ranges=np.array([[-1.0] * width, [1.0] * width]))
    assert got.tobytes() != fixed.tobytes()


def test_calibrated_teacher_dir_keeps_the_space_and_adds_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, student_dir: Path, calibrated
) -> None:
    from aegis_serve.models.resolve import calibrated_teacher_dir

    _, cal = calibrated
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    cal_file = tmp_path / "calibration.json"
    cal_file.write_text(json.dumps(cal))
    base = Embedder(student_dir)
    out = calibrated_teacher_dir(student_dir, cal_file)
    assert out.name == student_dir.resolve().name
    variant = Embedder(out)
    assert variant.space.space_id == base.space.space_id
    assert set(variant.space.calibration) == {384, 256, 128, 64}
    assert calibrated_teacher_dir(student_dir, cal_file) == out  # cached
