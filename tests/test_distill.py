"""Distillation end to end on tiny random models: the loss goes down, the output serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from aegis_serve.models.embedder import Embedder
from aegis_serve.training.distill import DistillConfig, cache_teacher_embeddings, distill

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
WORDS = "red green blue small large river stone bird tree quick slow bright dark song".split()


def tiny_st_dir(out: Path, tokenizer_from: Path, hidden: int, seed: int, manifest: dict) -> Path:
    """A random 2-layer BERT as a Sentence-Transformers dir (mean pooling, normalized)."""
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_from / name, out / name)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
    )
    (out / "2_Normalize").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    (out / "aegis_space.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def tiny_pair(tmp_path: Path, student_dir: Path) -> tuple[Path, Path, Path]:
    teacher = tiny_st_dir(
        tmp_path / "teacher",
        student_dir,
        48,
        0,
        {
            "space_id": "tiny-teacher/48",
            "model_id": "tiny-teacher",
            "matryoshka_dims": [48, 32, 16],
        },
    )
    student = tiny_st_dir(tmp_path / "student", student_dir, 32, 1, {"model_id": "tiny-student"})
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(96)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts))
    return teacher, student, corpus


@pytest.mark.parametrize("contrastive_weight", [0.0, 0.5])
def test_distill_reduces_loss_and_writes_a_loadable_student(
    tmp_path, tiny_pair, contrastive_weight
) -> None:
    teacher, student, corpus = tiny_pair
    out = tmp_path / "out"
    cfg = DistillConfig(
        teacher=str(teacher),
        student=str(student),
        corpus=str(corpus),
        out=str(out),
        sentences=None,
        epochs=6,
        batch_size=16,
        lr=2e-3,
        val_fraction=0.2,
        eval_every=10,
        device="cpu",
        dense_init=None,
        contrastive_weight=contrastive_weight,
        negatives=16,
        head_lr_multiplier=2.0,
        cache=str(tmp_path / "cache"),
        progress=False,
    )
    summary = distill(cfg)
    assert summary["val_loss_last"] < 0.8 * summary["val_loss_first"]

    served = Embedder(out)
    assert served.space.space_id == "tiny-teacher/48"
    assert served.dim == 48 and served.space.matryoshka_dims == (48, 32, 16)
    assert [spec.out_features for spec in served.cfg.dense] == [48]
    assert set(served.space.calibration) == {48, 32, 16}
    assert (out / "loss.png").stat().st_size > 0
    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "val" and any(r["kind"] == "train" for r in rows)
    # The served student is closer to the teacher than the untrained one, prefixes included.
    texts = corpus.read_text().splitlines()[:32]
    t = Embedder(teacher).embed(texts)
    s = served.embed(texts)
    for d in (48, 16):
        cos = np.sum(
            (s[:, :d] / np.linalg.norm(s[:, :d], axis=1, keepdims=True))
            * (t[:, :d] / np.linalg.norm(t[:, :d], axis=1, keepdims=True)),
            axis=1,
        )
        assert cos.mean() > 0.5


def test_teacher_cache_resumes_from_complete_shards(tmp_path, tiny_pair) -> None:
    teacher, _, corpus = tiny_pair
    model = Embedder(teacher)
    texts = corpus.read_text().splitlines()
    cache = tmp_path / "cache"
    full = cache_teacher_embeddings(model, texts, cache, shard_size=32, progress=False)
    assert full.shape == (96, 48) and len(list(cache.glob("shard_*.npy"))) == 3
    # Simulate an interrupted run: one shard is missing; only it is recomputed.
    (cache / "shard_00001.npy").unlink()
    marker = np.full((32, 48), 7.0, dtype=np.float32)
    np.save(cache / "shard_00000.npy", marker)
    again = cache_teacher_embeddings(model, texts, cache, shard_size=32, progress=False)
    np.testing.assert_array_equal(again[:32], marker)  # kept, not recomputed
    np.testing.assert_allclose(again[32:], full[32:], atol=1e-6)
