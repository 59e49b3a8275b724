"""LEAF-style distillation: train the whole query student to write into the teacher's space.

The asymmetric split only works if student query vectors are comparable with teacher document
vectors, so the student (transformer, pooling, a Dense to the teacher's width) is trained to
reproduce the teacher's *normalized* embeddings of a text corpus, at every Matryoshka prefix of
the teacher's space at once, so truncated student vectors stay aligned too:

    loss = Σ_d (1 - cos(s[:, :d], t[:, :d])) + λ · MSE(normalize(s), normalize(t))

Teacher embeddings are computed once and cached as ``.npy`` shards plus a manifest, so an
interrupted run resumes where it stopped and reruns with other hyper-parameters cost nothing.
The output is a Sentence-Transformers directory (fp16 transformer weights, fp32 Dense) that
the encoder service loads unchanged and that declares the teacher's ``space_id``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aegis_lab.embedding_cache import cache_teacher_embeddings, embedding_cache_path
from aegis_lab.training import LS_DENSE, SCORE_LOSSES
from aegis_lab.training.corpus import load_corpus
from aegis_lab.training.dev import DevCheck, DevSet, DevTexts, embed_dev_sets, read_dev_sets
from aegis_lab.training.loop import Paused, Trainer, split_corpus
from aegis_lab.training.losses import matryoshka_loss
from aegis_lab.training.outputs import write_outputs
from aegis_lab.training.student_model import load_student
from aegis_serve.models.embedder import Embedder

log = logging.getLogger(__name__)

__all__ = [
    "DistillConfig",
    "cache_teacher_embeddings",
    "distill",
    "load_corpus",
    "main",
    "matryoshka_loss",
]


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (written into the output's log)."""

    teacher: str
    student: str
    corpus: str
    out: str
    sentences: int | None = 20000
    epochs: float = 1.0
    batch_size: int = 64
    lr: float = 1e-4
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    max_seq_len: int = 64
    mse_weight: float = 1.0
    contrastive_weight: float = 0.0
    negatives: int = 1024
    temperature: float = 0.05
    cos_weight: float = 1.0
    score_weight: float = 0.0
    score_temperature: float = 0.05
    neighbours: int = 0
    mined: int = 0  # per text, the teacher rows the student scores highest now, in the pool
    score_loss: str = "kl"  # kl | margin-mse
    binary_weight: float = 0.0
    binary_sharpness: float = 2.0
    dev_set: str | None = None
    dev_metric: str = "ndcg_at_10"
    student_layers: int = 0
    freeze_word_embeddings: bool = False
    head_lr_multiplier: float = 1.0
    val_fraction: float = 0.02
    eval_every: int = 50
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    teacher_backend: str = "auto"  # auto: onnx on CPU when installed (same vectors, faster)
    teacher_max_tokens: int | None = None  # None: max_seq_len (what the student sees)
    bucket_batches: bool = True  # batches of texts of about one length
    checkpoint_every_s: float = 600.0  # 0 = no checkpoints
    segment_seconds: float | None = None  # stop (checkpointed) after this long; resume later
    resume: bool = False  # continue from out/checkpoint.pt when it exists
    dense_init: str | None = str(LS_DENSE)
    model_id: str | None = None
    calibration: bool = True
    max_train_seconds: float | None = None
    cache: str | None = None
    progress: bool = True
    dims: list[int] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


@dataclass
class TeacherTargets:
    """What the teacher contributes to a run; the teacher itself is unloaded once they exist."""

    vectors: np.ndarray  # its unit vectors of the corpus texts, (n, dim)
    seconds: float  # time spent embedding the corpus (0 when the cache had it)
    prompts: dict[str, str]  # its prompts, which the student is trained and written with
    prompt_name: str | None  # the prompt the corpus was embedded with
    dims: list[int]  # the Matryoshka dims the loss compares
    space: dict[str, Any]  # the space manifest the student declares
    dev: list[DevSet] | None

    @property
    def query_prompt(self) -> str:
        """The prompt text the student embeds corpus texts and dev queries with."""
        return self.prompts.get(self.prompt_name, "") if self.prompt_name else ""

    @property
    def document_prompt(self) -> str:
        """The prompt text the student embeds dev documents with."""
        return self.prompts.get("document", "")


def teacher_backend(setting: str, device: str) -> str:
    """``auto``: ONNX Runtime on CPU when installed (the same vectors as torch, faster)."""
    if setting != "auto":
        return setting
    from aegis_serve.models.onnx_runtime import onnx_available

    return "onnx" if device == "cpu" and onnx_available() else "torch"


def teacher_targets(
    cfg: DistillConfig,
    teacher_dir: Path,
    student_dir: Path,
    texts: list[str],
    dev_texts: list[tuple[str, DevTexts]] | None,
    device: str,
) -> TeacherTargets:
    """Load the teacher, embed the corpus (cached) and the dev set, describe the space."""
    backend = teacher_backend(cfg.teacher_backend, device)
    teacher = Embedder(teacher_dir, device=device, dtype="float32", backend=backend,
                       threads=cfg.threads)  # fmt: skip
    prompt_name = "query" if "query" in teacher.prompts else None
    max_tokens = cfg.teacher_max_tokens or cfg.max_seq_len
    space = {
        "space_id": teacher.space.space_id,
        "model_id": cfg.model_id or f"{Path(student_dir).resolve().name}-distilled",
        "matryoshka_dims": list(teacher.space.matryoshka_dims),
    }
    cache = (
        Path(cfg.cache)
        if cfg.cache
        else embedding_cache_path(teacher, texts, prompt_name, max_tokens)
    )
    t0 = time.perf_counter()
    vectors = cache_teacher_embeddings(
        teacher, texts, cache, prompt_name=prompt_name, max_tokens=max_tokens,
        progress=cfg.progress,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return TeacherTargets(
        vectors=vectors,
        seconds=seconds,
        prompts=dict(teacher.prompts),
        prompt_name=prompt_name,
        dims=[int(d) for d in (cfg.dims or teacher.space.matryoshka_dims)],
        space=space,
        dev=embed_dev_sets(dev_texts, teacher, cfg.progress) if dev_texts else None,
    )


def check_config(cfg: DistillConfig) -> None:
    """Refuse settings that cannot work together, before anything loads."""
    if cfg.score_loss not in SCORE_LOSSES:
        raise ValueError(f"--score-loss {cfg.score_loss!r} is none of {', '.join(SCORE_LOSSES)}")
    if cfg.mined < 0 or cfg.neighbours < 0 or cfg.negatives < 0:
        raise ValueError("--mined, --neighbours and --negatives count rows: use 0 or more")
    if (cfg.mined or cfg.neighbours) and not (cfg.score_weight or cfg.contrastive_weight):
        raise ValueError(
            "--mined and --neighbours add rows to the pool of the score and contrastive terms; "
            "set --score-weight or --contrastive-weight too"
        )
    if cfg.binary_weight < 0 or cfg.binary_sharpness <= 0:
        raise ValueError("--binary-weight must be ≥ 0 and --binary-sharpness > 0")


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Run one distillation; returns the summary also written to ``training_summary.json``.

    The phases, in order: the corpus (``corpus``), the teacher's targets (cached embeddings),
    the student (``student_model``), the step loop with dev checks (``loop``, ``dev``) and the
    outputs (``outputs``); the objective is ``losses.matryoshka_loss``.
    """
    from aegis_serve.models.resolve import resolve_model

    check_config(cfg)
    started = time.perf_counter()
    _seed_everything(cfg.seed)
    device = _device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # corpus (and the dev set's texts, read first so a bad name fails before any model loads)
    dev_texts = read_dev_sets(cfg.dev_set) if cfg.dev_set else None
    teacher_path = resolve_model(cfg.teacher, progress=cfg.progress)
    student_path = resolve_model(cfg.student, progress=cfg.progress)
    out = Path(cfg.out)
    texts = load_corpus(cfg.corpus, cfg.sentences, cfg.seed)
    if len(texts) < 4:
        raise ValueError(f"corpus {cfg.corpus!r} gives only {len(texts)} texts")

    targets = teacher_targets(cfg, teacher_path, student_path, texts, dev_texts, device)
    model = load_student(
        student_path,
        targets.vectors.shape[1],
        device,
        layers=cfg.student_layers,
        dense_init=Path(cfg.dense_init) if cfg.dense_init else None,
        freeze_word_embeddings=cfg.freeze_word_embeddings,
    )

    dev, dims, query_prompt = targets.dev, targets.dims, targets.query_prompt
    held_out = set().union(*(d.texts for d in dev)) if dev else None
    data = split_corpus(texts, targets.vectors, cfg, held_out)
    dev_check = None
    if dev is not None and cfg.dev_set:
        dev_check = DevCheck(
            dev, cfg.dev_set, cfg.dev_metric, dims, query_prompt, targets.document_prompt
        )
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        model, data, cfg, dims, query_prompt, device, out / "training_log.jsonl", dev_check
    )
    try:
        steps = trainer.run(resume=cfg.resume)
    except Paused as paused:
        log.warning("%s; continue with the same flags plus --resume", paused)
        return {"paused": True, "step": paused.step, "total_steps": paused.total,
                "reason": paused.reason, "checkpoint": str(trainer.checkpoint_path())}  # fmt: skip
    dev_info = dev_check.keep_best(model, steps) if dev_check is not None else {}

    run = {
        "config": asdict(cfg),
        "teacher_dir": str(teacher_path),
        "student_dir": str(student_path),
        "space": targets.space,
        "texts": len(texts),
        "train_texts": len(data.train_idx),
        "val_texts": int(data.n_val),
        "steps": steps,
        "device": device,
        "teacher_embed_s": round(targets.seconds, 1),
        "train_s": round(trainer.train_seconds, 1),
    }
    return write_outputs(
        out,
        model,
        student_path,
        targets.space,
        targets.prompts,
        trainer.rows,
        run,
        calibration_vectors=targets.vectors if cfg.calibration else None,
        dev_info=dev_info,
        started=started,
    )


def config_from_args(ns: argparse.Namespace) -> DistillConfig:
    """The run config from parsed flags."""
    return DistillConfig(
        teacher=ns.teacher,
        student=ns.student,
        corpus=ns.corpus,
        out=ns.out,
        sentences=ns.sentences or None,
        epochs=ns.epochs,
        batch_size=ns.batch_size,
        lr=ns.lr,
        warmup_fraction=ns.warmup_fraction,
        max_seq_len=ns.max_seq_len,
        mse_weight=ns.mse_weight,
        eval_every=ns.eval_every,
        seed=ns.seed,
        device=ns.device,
        threads=ns.threads,
        dense_init=ns.dense_init or None,
        model_id=ns.model_id,
        cache=ns.cache,
        progress=not ns.no_progress,
        max_train_seconds=ns.max_train_seconds,
        contrastive_weight=ns.contrastive_weight,
        negatives=ns.negatives,
        temperature=ns.temperature,
        cos_weight=ns.cos_weight,
        score_weight=ns.score_weight,
        score_temperature=ns.score_temperature,
        neighbours=ns.neighbours,
        mined=ns.mined,
        score_loss=ns.score_loss,
        binary_weight=ns.binary_weight,
        binary_sharpness=ns.binary_sharpness,
        dev_set=ns.dev_set or None,
        head_lr_multiplier=ns.head_lr_multiplier,
        dev_metric=ns.dev_metric,
        student_layers=ns.student_layers,
        freeze_word_embeddings=ns.freeze_word_embeddings,
        teacher_backend=ns.teacher_backend,
        teacher_max_tokens=ns.teacher_max_tokens or None,
        bucket_batches=not ns.no_bucket_batches,
        checkpoint_every_s=ns.checkpoint_every_s,
        segment_seconds=ns.segment_seconds,
        resume=ns.resume,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aegis_lab.training.distill``: the same flags as ``aegis-lab distill``."""
    from aegis_lab.training import add_arguments

    p = argparse.ArgumentParser(prog="python -m aegis_lab.training.distill", description=__doc__)
    add_arguments(p)
    summary = distill(config_from_args(p.parse_args(argv)))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
