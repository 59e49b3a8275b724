"""Distillation end to end on tiny random models: the loss goes down, the output serves."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from aegis_lab.embedding_cache import cache_teacher_embeddings
from aegis_lab.training.distill import DistillConfig, distill
from aegis_lab.training.loop import mine_rows, teacher_neighbours
from aegis_lab.training.losses import _binary_term, _margin_mse, _score_kl, matryoshka_loss
from aegis_serve.models.embedder import Embedder

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


def tiny_config(tmp_path: Path, tiny_pair: tuple[Path, Path, Path], **changes) -> DistillConfig:
    """A CPU run of the tiny pair into ``tmp_path / "out"``; ``changes`` set the rest."""
    teacher, student, corpus = tiny_pair
    base = {
        "teacher": str(teacher),
        "student": str(student),
        "corpus": str(corpus),
        "out": str(tmp_path / "out"),
        "sentences": None,
        "batch_size": 16,
        "lr": 2e-3,
        "device": "cpu",
        "dense_init": None,
        "cache": str(tmp_path / "cache"),
        "progress": False,
    }
    return DistillConfig(**{**base, **changes})


def tiny_dev_set(tmp_path: Path, corpus: Path) -> tuple[list[str], dict, Path]:
    """The corpus texts and a dev set of its first 18 (6 queries → 12 documents), as JSON."""
    texts = corpus.read_text().splitlines()
    dev = {"queries": texts[:6], "documents": texts[6:18], "relevant": list(range(6))}
    dev_path = tmp_path / "dev.json"
    dev_path.write_text(json.dumps(dev))
    return texts, dev, dev_path


@pytest.mark.parametrize(
    ("contrastive_weight", "score_weight", "neighbours", "extra"),
    [
        (0.0, 0.0, 0, {}),
        (0.5, 0.0, 0, {}),
        (0.0, 1.0, 4, {}),
        (0.0, 1.0, 0, {"mined": 4, "score_loss": "margin-mse", "binary_weight": 0.5}),
    ],
    ids=["leaf", "leaf+infonce", "leaf+score-kl+neighbours", "leaf+margin-mse+mined+binary"],
)
def test_distill_reduces_loss_and_writes_a_loadable_student(
    tmp_path, tiny_pair, contrastive_weight, score_weight, neighbours, extra
) -> None:
    teacher, _, corpus = tiny_pair
    out = tmp_path / "out"
    cfg = tiny_config(
        tmp_path,
        tiny_pair,
        epochs=6,
        val_fraction=0.2,
        eval_every=10,
        contrastive_weight=contrastive_weight,
        score_weight=score_weight,
        neighbours=neighbours,
        negatives=16,
        head_lr_multiplier=2.0,
        **extra,
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


def test_score_kl_is_zero_on_a_perfect_student_and_leaves_out_the_own_column() -> None:
    gen = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=1)
    pool = torch.cat([teacher, torch.nn.functional.normalize(torch.randn(6, 8, generator=gen))])
    assert float(_score_kl(teacher, teacher, pool, 0.05)) == pytest.approx(0.0, abs=1e-6)
    student = torch.nn.functional.normalize(teacher + 0.5 * torch.randn(4, 8, generator=gen))
    loss = float(_score_kl(student, teacher, pool, 0.05))
    assert loss > 0.01
    # By hand: each row's KL over the pool without its own column (i), averaged over rows.
    s_log = torch.log_softmax(student[0] @ pool[1:].T / 0.05, dim=0)
    t_log = torch.log_softmax(teacher[0] @ pool[1:].T / 0.05, dim=0)
    per_row = [
        float((t.exp() * (t - s_)).sum())
        for t, s_ in [
            (
                torch.log_softmax(
                    torch.cat([teacher[i] @ pool[:i].T, teacher[i] @ pool[i + 1 :].T]) / 0.05, 0
                ),
                torch.log_softmax(
                    torch.cat([student[i] @ pool[:i].T, student[i] @ pool[i + 1 :].T]) / 0.05, 0
                ),
            )
            for i in range(4)
        ]
    ]
    assert float((t_log.exp() * (t_log - s_log)).sum()) == pytest.approx(per_row[0], rel=1e-5)
    assert loss == pytest.approx(sum(per_row) / 4, rel=1e-5)


def _unit(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=-1)


def test_margin_mse_is_zero_on_a_perfect_student_and_matches_the_margins_by_hand() -> None:
    gen = torch.Generator().manual_seed(1)
    teacher = _unit(gen, 3, 8)
    pool = torch.cat([teacher, _unit(gen, 5, 8)])
    assert float(_margin_mse(teacher, teacher, pool)) == pytest.approx(0.0, abs=1e-7)
    student = torch.nn.functional.normalize(teacher + 0.7 * torch.randn(3, 8, generator=gen))
    want = []
    for i in range(3):
        for j in range(8):
            if j != i:
                s_margin = student[i] @ pool[i] - student[i] @ pool[j]
                t_margin = teacher[i] @ pool[i] - teacher[i] @ pool[j]
                want.append(float((s_margin - t_margin) ** 2))
    assert float(_margin_mse(student, teacher, pool)) == pytest.approx(np.mean(want), rel=1e-5)


def test_binary_term_falls_as_the_student_takes_the_teachers_sign_bits() -> None:
    gen = torch.Generator().manual_seed(2)
    teacher = _unit(gen, 4, 64)
    pool = torch.cat([teacher, _unit(gen, 12, 64)])
    # A student with exactly the teacher's signs, every component the same size: cos → 1.
    same_signs = torch.nn.functional.normalize(torch.sign(teacher), dim=1)
    half = torch.where(torch.arange(64) < 32, teacher, -teacher)  # half the bits flipped
    half = torch.nn.functional.normalize(half, dim=1)
    for with_pool in (None, pool):
        exact = float(_binary_term(same_signs, teacher, with_pool, 3.0, 0.05))
        flipped = float(_binary_term(half, teacher, with_pool, 3.0, 0.05))
        assert exact < 0.05 < flipped
    # It trains: the gradient moves a random student's bits towards the teacher's.
    student = _unit(gen, 4, 64).requires_grad_()
    opt = torch.optim.SGD([student], lr=0.5)
    agree_before = float((torch.sign(student) == torch.sign(teacher)).float().mean())
    for _ in range(50):
        opt.zero_grad()
        _binary_term(
            torch.nn.functional.normalize(student, dim=1), teacher, pool, 2.0, 0.05
        ).backward()
        opt.step()
    agree_after = float((torch.sign(student) == torch.sign(teacher)).float().mean())
    assert agree_after > max(0.9, agree_before + 0.2)


def test_matryoshka_loss_refuses_an_unknown_score_loss() -> None:
    gen = torch.Generator().manual_seed(3)
    t = _unit(gen, 2, 8)
    with pytest.raises(ValueError, match="score_loss 'hinge'"):
        matryoshka_loss(t, t, [8], 0.0, score_weight=1.0, score_loss="hinge")


def test_mined_rows_are_the_students_nearest_teacher_rows_without_the_batch() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(40, 6)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    rows = np.arange(100, 140)  # corpus indices of the matrix rows
    batch = np.array([100, 105, 120])
    queries = matrix[[0, 5, 20]] + 0.3 * rng.normal(size=(3, 6)).astype(np.float32)
    got = mine_rows(torch.from_numpy(queries), torch.from_numpy(matrix), rows, batch, 4)
    want: set[int] = set()
    for q in queries:
        order = [int(rows[i]) for i in np.argsort(-(matrix @ q)) if rows[i] not in batch]
        want |= set(order[:4])
    assert set(got.tolist()) == want and not set(got.tolist()) & set(batch.tolist())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mined": 4}, "set --score-weight or --contrastive-weight"),
        ({"score_weight": 1.0, "score_loss": "hinge"}, "--score-loss 'hinge'"),
        ({"binary_weight": 1.0, "binary_sharpness": 0.0}, "--binary-sharpness"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_model_loads(
    tmp_path, tiny_pair, changes, message
) -> None:
    cfg = tiny_config(tmp_path, tiny_pair, teacher=str(tmp_path / "missing"), **changes)
    with pytest.raises(ValueError, match=message):
        distill(cfg)


def test_teacher_neighbours_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.array(sorted(rng.choice(50, size=30, replace=False)))
    got = teacher_neighbours(vectors, rows, 3)
    for r, nbrs in zip(rows, got, strict=True):
        sims = {int(o): float(vectors[r] @ vectors[o]) for o in rows if o != r}
        want = sorted(sims, key=sims.get, reverse=True)[:3]
        assert sorted(nbrs.tolist()) == sorted(want)


def test_dev_set_keeps_the_best_step_and_holds_its_texts_out(tmp_path, tiny_pair) -> None:
    teacher, _, corpus = tiny_pair
    _, dev, dev_path = tiny_dev_set(tmp_path, corpus)
    out = tmp_path / "out"
    cfg = tiny_config(
        tmp_path, tiny_pair, epochs=3, val_fraction=0.1, eval_every=3, dev_set=str(dev_path)
    )
    summary = distill(cfg)
    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    curve = [r for r in rows if r["kind"] == "dev"]
    assert curve[0]["step"] == 0 and len(curve) >= 3
    best = max(curve, key=lambda r: r["student_teacher_ndcg_at_10"])  # first max wins ties
    assert summary["dev"]["kept_step"] == best["step"]
    assert summary["dev"]["kept"] == best["student_teacher_ndcg_at_10"]
    assert summary["dev"]["start"] == curve[0]["student_teacher_ndcg_at_10"]
    # Dev texts were not trained on: 18 of the 96 texts are the dev set's.
    assert summary["train_texts"] + summary["val_texts"] == 96 - 18
    # What was written is the kept step: re-scoring the served student gives its number.
    from aegis_lab.evaluation.retrieval import evaluate_pair

    served, t_model = Embedder(out), Embedder(teacher)
    score = evaluate_pair(
        served.embed(dev["queries"]), t_model.embed(dev["documents"]), dev["relevant"]
    )[0]["ndcg_at_10"]
    assert score == pytest.approx(best["student_teacher_ndcg_at_10"], abs=0.02)


def test_unknown_dev_set_is_refused_before_any_model_loads(tmp_path, tiny_pair) -> None:
    cfg = tiny_config(tmp_path, tiny_pair, dev_set="wordnet-dve", teacher=str(tmp_path / "none"))
    # The teacher path does not exist either: the dev-set error must come first, not after
    # minutes of teacher embeddings.
    with pytest.raises(ValueError, match=r"none of 'suite'.*'wordnet-dev' nor a JSON file"):
        distill(cfg)


def test_layer_exit_student_of_the_teacher_packs_without_its_shared_embeddings(
    tmp_path, tiny_pair, monkeypatch
) -> None:
    """--student-layers 1 on the teacher itself, word embeddings frozen, dev set picked by the
    mean over dims; pack-student then drops the embedding table and restore puts it back."""
    from safetensors.torch import load_file, save_file

    from aegis_lab.training.pack import strip_shared
    from aegis_serve.models.shared_weights import (
        SHARED_FILE,
        SharedWeightsError,
        restore_shared,
    )

    teacher, _, corpus = tiny_pair
    texts, _, dev_path = tiny_dev_set(tmp_path, corpus)
    out = tmp_path / "out"
    summary = distill(
        tiny_config(
            tmp_path,
            tiny_pair,
            student=str(teacher),
            student_layers=1,
            freeze_word_embeddings=True,
            epochs=2,
            eval_every=3,
            dev_set=str(dev_path),
            dev_metric="mean_float_binary_ndcg_at_10",
        )
    )
    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    curve = [r for r in rows if r["kind"] == "dev"]
    best = max(curve, key=lambda r: r["mean_float_binary_ndcg_at_10"])
    assert summary["dev"]["kept"] == best["mean_float_binary_ndcg_at_10"]
    floats = best["student_teacher_ndcg_at_10_by_dim"]
    signs = best["binary_ndcg_at_10_by_dim"]
    assert set(floats) == set(signs) == {"48", "32", "16"}
    assert best["mean_ndcg_at_10"] == pytest.approx(np.mean(list(floats.values())))
    assert best["mean_float_binary_ndcg_at_10"] == pytest.approx(
        np.mean([*floats.values(), *signs.values()])
    )
    served = Embedder(out)
    assert served.num_layers == 1 and served.dim == 48
    teacher_w = load_file(str(teacher / "model.safetensors"))
    student_w = load_file(str(out / "model.safetensors"))
    emb = "embeddings.word_embeddings.weight"
    assert torch.equal(student_w[emb], teacher_w[emb].half())  # frozen (saved in fp16)
    assert not any(k.startswith("encoder.layer.1.") for k in student_w)

    packed = tmp_path / "packed"
    manifest = strip_shared(out, teacher, str(teacher), packed)
    assert emb in manifest["tensors"] and (packed / SHARED_FILE).is_file()
    assert emb not in load_file(str(packed / "model.safetensors"))
    size = (packed / "model.safetensors").stat().st_size
    assert size < (out / "model.safetensors").stat().st_size
    restored = restore_shared(packed, teacher, tmp_path / "restored")
    assert not (restored / SHARED_FILE).exists()
    again = load_file(str(restored / "model.safetensors"))
    assert set(again) == set(student_w)
    assert all(torch.equal(again[k], student_w[k]) for k in student_w)
    np.testing.assert_array_equal(Embedder(restored).embed(texts[:5]), served.embed(texts[:5]))

    # Committed like this, builtin:query-exit2 is completed once into the cache and serves it.
    from aegis_serve.models import resolve

    monkeypatch.setattr(resolve, "DISTILLED_DIR", packed)
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    query_dir = resolve.resolve_model("builtin:query-exit2", progress=False)
    assert query_dir.is_relative_to(tmp_path / "cache")
    assert resolve.resolve_model("builtin:query-exit2", progress=False) == query_dir
    np.testing.assert_array_equal(Embedder(query_dir).embed(texts[:5]), served.embed(texts[:5]))
    linear = resolve.resolve_model("builtin:query-linear", progress=False)
    assert linear.name == "all-minilm-l6-v2-aligned" and linear.is_relative_to(tmp_path / "cache")
    monkeypatch.setattr(resolve, "DISTILLED_DIR", tmp_path / "absent")
    with pytest.raises(ValueError, match="builtin:query-exit2: this checkout has no complete"):
        resolve.resolve_model("builtin:query-exit2", progress=False)
    # builtin:query-leaf is completed the same way from its own committed directory.
    monkeypatch.setattr(resolve, "LEAF_DIR", packed)
    leaf = resolve.resolve_model("builtin:query-leaf", progress=False)
    np.testing.assert_array_equal(Embedder(leaf).embed(texts[:5]), served.embed(texts[:5]))
    # The default query model is the suite's dev-split winner: the trained MiniLM.
    assert resolve.DEFAULT_QUERY == "builtin:query-leaf"
    assert resolve.resolve_model("builtin:query", progress=False) == leaf
    monkeypatch.setattr(resolve, "LEAF_DIR", tmp_path / "absent")
    with pytest.raises(ValueError, match="builtin:query-leaf: this checkout has no complete"):
        resolve.resolve_model("builtin:query-leaf", progress=False)

    # A teacher whose table changed must be refused, not silently mixed in.
    other = tmp_path / "other-teacher"
    shutil.copytree(teacher, other)
    teacher_w[emb] = teacher_w[emb] + 1e-3
    save_file(teacher_w, str(other / "model.safetensors"))
    with pytest.raises(SharedWeightsError, match="differs"):
        restore_shared(packed, other, tmp_path / "bad")


def test_student_layers_beyond_the_student_depth_are_refused(tmp_path, tiny_pair) -> None:
    with pytest.raises(ValueError, match="--student-layers 5: the student has 2 layers"):
        distill(tiny_config(tmp_path, tiny_pair, student_layers=5))


def test_keep_first_layers_cuts_the_model_and_its_layer_options(tiny_pair) -> None:
    teacher, _, corpus = tiny_pair
    texts = corpus.read_text().splitlines()[:4]
    full = Embedder(teacher)
    cut = Embedder(teacher)
    cut.keep_first_layers(1)
    assert cut.num_layers == 1 and cut.hf_config.num_hidden_layers == 1
    assert cut.space.layer_options == (1,)
    # For good: the same vectors as a one-call layer exit of the uncut model.
    full.space = dataclasses.replace(full.space, layer_options=(2, 1))
    batch = full.collate(full.tokenize(texts))
    np.testing.assert_allclose(cut.forward(batch), full.forward(batch, layers=1), atol=1e-6)
    with pytest.raises(ValueError, match="cannot keep 2 layers: the model has 1"):
        cut.keep_first_layers(2)


def test_a_run_paused_every_step_and_resumed_equals_an_uninterrupted_one(
    tmp_path, tiny_pair
) -> None:
    """segment_seconds ~0 pauses after each step with a checkpoint; --resume continues. The
    pieced-together run takes the same steps, losses and final weights as one straight run."""
    from safetensors.torch import load_file

    straight = distill(tiny_config(tmp_path, tiny_pair, out=str(tmp_path / "straight"),
                                   epochs=2, eval_every=4))  # fmt: skip
    pieces = tiny_config(tmp_path, tiny_pair, out=str(tmp_path / "pieces"), epochs=2,
                         eval_every=4, segment_seconds=1e-9)  # fmt: skip
    first = distill(pieces)
    assert first["paused"] and first["step"] == 1 and Path(first["checkpoint"]).is_file()
    resumed = dataclasses.replace(pieces, resume=True)
    for _ in range(40):
        summary = distill(resumed)
        if not summary.get("paused"):
            break
    assert summary["steps"] == straight["steps"] > 5
    rows = [json.loads(x) for x in (tmp_path / "pieces" / "training_log.jsonl").open()]
    ref = [json.loads(x) for x in (tmp_path / "straight" / "training_log.jsonl").open()]
    key = [(r["kind"], r["step"]) for r in ref]
    assert [(r["kind"], r["step"]) for r in rows] == key
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses == pytest.approx([r["loss"] for r in ref if r["kind"] == "train"], rel=1e-5)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "pieces" / "model.safetensors"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)


def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path, tiny_pair) -> None:
    cfg = tiny_config(tmp_path, tiny_pair, segment_seconds=1e-9)
    assert distill(cfg)["paused"]
    other = dataclasses.replace(cfg, resume=True, lr=1e-4)
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        distill(other)


def test_a_corrupt_teacher_shard_is_named_and_recomputed(tmp_path, tiny_pair, caplog) -> None:
    teacher, _, corpus = tiny_pair
    model = Embedder(teacher)
    texts = corpus.read_text().splitlines()
    cache = tmp_path / "cache"
    full = cache_teacher_embeddings(model, texts, cache, shard_size=32, progress=False)
    assert (
        full.dtype == np.float16 and json.loads((cache / "stats.json").read_text())["texts_per_s"]
    )
    (cache / "shard_00002.npy").write_bytes(b"not a numpy file")
    with caplog.at_level("WARNING"):
        again = cache_teacher_embeddings(model, texts, cache, shard_size=32, progress=False)
    assert "shard_00002.npy is corrupt" in caplog.text
    np.testing.assert_array_equal(again, full)


def test_suite_dev_sets_are_scored_as_a_macro_average(tmp_path, tiny_pair, monkeypatch) -> None:
    """--dev-set suite-small: every task of the suite's dev split, cut to a few queries each,
    scored per task and as their mean; their texts are kept out of training."""
    from types import SimpleNamespace

    texts = tiny_pair[2].read_text().splitlines()

    def task(name: str, lo: int) -> SimpleNamespace:
        docs = texts[lo : lo + 12]
        return SimpleNamespace(name=name, queries=docs[:4], documents=docs,
                               relevant=[[i] for i in range(4)])  # fmt: skip

    monkeypatch.setattr("aegis_lab.evaluation.suite.load_suite",
                        lambda split, size, tasks=None: [task("a", 0), task("b", 20)])  # fmt: skip
    summary = distill(tiny_config(tmp_path, tiny_pair, dev_set="suite-small", eval_every=3))
    rows = [json.loads(x) for x in (tmp_path / "out" / "training_log.jsonl").open()]
    dev_rows = [r for r in rows if r["kind"] == "dev"]
    assert dev_rows and all(set(r["tasks"]) == {"a", "b"} for r in dev_rows)
    for r in dev_rows:
        assert r["student_teacher_ndcg_at_10"] == pytest.approx(np.mean(list(r["tasks"].values())))
    assert summary["dev"]["set"] == "suite-small"
    assert summary["train_texts"] + summary["val_texts"] <= len(texts) - 24


def test_layer_exit_writes_the_teachers_first_layers_as_a_student(tmp_path, tiny_pair) -> None:
    from aegis_lab.training.student_model import write_layer_exit

    teacher, _, corpus = tiny_pair
    texts = corpus.read_text().splitlines()[:5]
    out = write_layer_exit(teacher, 1, tmp_path / "exit1")
    probe = Embedder(out)
    assert probe.num_layers == 1 and probe.space.space_id == "tiny-teacher/48"
    assert probe.space.model_id == "tiny-teacher-exit1"
    cut = Embedder(teacher)
    cut.keep_first_layers(1)
    np.testing.assert_allclose(probe.embed(texts), cut.embed(texts), atol=2e-3)  # fp16 weights
    with pytest.raises(ValueError, match="--layers 3: the teacher has 2 layers"):
        write_layer_exit(teacher, 3, tmp_path / "exit3")
