"""The transformers+torch pipeline equals sentence-transformers on the same directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from aegis_serve.models.embedder import Embedder
from aegis_serve.models.st_dir import ModelDirError
from conftest import make_space_variant

TEXTS = [
    "hello world",
    "A much longer sentence about embeddings and servers. " * 30,
    "x",
    "Ünïcödé テキスト 🚀",
    "   leading and trailing spaces   ",
]


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_matches_sentence_transformers(student, student_dir):
    ref = SentenceTransformer(str(student_dir), device="cpu").encode(TEXTS)
    assert cos(student.embed(TEXTS), ref).min() >= 0.9999


@pytest.fixture(scope="module")
def dense_prompt_dir(tmp_path_factory, student_dir) -> Path:
    """An ST-6-saved dir with a Dense head, prompts and include_prompt=False pooling."""
    from sentence_transformers.sentence_transformer.modules import Dense

    base = SentenceTransformer(str(student_dir), device="cpu")
    torch.manual_seed(0)
    base[1].include_prompt = False
    model = SentenceTransformer(
        modules=[base[0], base[1], Dense(384, 128), base[2]],
        device="cpu",
        prompts={"query": "query: ", "document": "passage: "},
    )
    out = tmp_path_factory.mktemp("st6") / "dense-prompt"
    model.save(str(out))
    return out


def test_dense_head_and_prompts_match(dense_prompt_dir):
    ref_model = SentenceTransformer(str(dense_prompt_dir), device="cpu")
    ours = Embedder(dense_prompt_dir)
    assert ours.dim == 128 and ours.cfg.pooling_mode == "mean" and not ours.cfg.include_prompt
    for prompt in ("query", "document", None):
        ref = ref_model.encode(TEXTS, prompt_name=prompt)
        assert cos(ours.embed(TEXTS, prompt_name=prompt), ref).min() >= 0.9999, prompt


def test_truncation_flags_and_counts(student):
    items = student.tokenize(["word " * 300, "short"])
    assert items[0].truncated and len(items[0].ids) == student.max_tokens == 256
    assert items[0].original_tokens == 302
    assert not items[1].truncated and items[1].original_tokens == len(items[1].ids) == 3


def test_batch_composition_does_not_change_results(student):
    alone = np.stack([student.embed([t])[0] for t in TEXTS])
    together = student.embed(TEXTS * 5, batch_size=7)[: len(TEXTS)]
    assert cos(alone, together).min() >= 0.9999


def test_layer_exit_equals_truncated_layer_list(student_dir, tmp_path):
    variant = make_space_variant(
        student_dir, tmp_path / "two-d", {"space_id": "x/384", "layer_options": [6, 3, 1]}
    )
    ours = Embedder(variant)
    assert ours.space.layer_options == (6, 3, 1)
    reference = Embedder(variant)
    for k in (3, 1):
        reference.model.encoder.layer = torch.nn.ModuleList(list(reference._layers)[:k])
        expected = reference.embed(TEXTS)
        got = ours.embed(TEXTS, layers=k)
        assert cos(got, expected).min() >= 0.99999
        assert cos(got, ours.embed(TEXTS)).min() < 0.999  # really a different depth
    assert len(ours.model.encoder.layer) == 6  # restored after every call
    with pytest.raises(ValueError, match="not offered"):
        ours.embed(TEXTS, layers=4)


def test_manifest_is_validated(student_dir, tmp_path):
    bad = make_space_variant(student_dir, tmp_path / "bad", {"matryoshka_dims": [384, 100]})
    with pytest.raises(ModelDirError, match="multiples of 8"):
        Embedder(bad)
    wrong_dim = make_space_variant(student_dir, tmp_path / "dim", {"dimensions": 768})
    with pytest.raises(ModelDirError, match="768"):
        Embedder(wrong_dim)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match=r"modules\.json"):
        Embedder(tmp_path / "empty")


def test_calibration_ranges_are_loaded(student_dir, tmp_path):
    variant = make_space_variant(student_dir, tmp_path / "cal", {"space_id": "c/384"})
    ranges = {"64": {"min": [-0.3] * 64, "max": [0.4] * 64}}
    (variant / "calibration.json").write_text(json.dumps({"ranges": ranges}))
    space = Embedder(variant).space
    assert set(space.calibration) == {64}
    np.testing.assert_allclose(space.calibration[64][0], -0.3)
