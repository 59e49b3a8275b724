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
import copy
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from aegis_serve.evaluation.retrieval import (
    compute_calibration,
    evaluate_pair,
    load_dataset,
    score_vectors,
)
from aegis_serve.models.embedder import Embedder
from aegis_serve.models.packaged import cache_dir
from aegis_serve.models.st_dir import (
    CALIBRATION_FILE,
    SPACE_MANIFEST,
    read_st_config,
    weights_fingerprint,
    write_dense,
    write_json,
    write_modules,
    write_prompts,
)
from aegis_serve.training import LS_DENSE

__all__ = [
    "DistillConfig",
    "cache_teacher_embeddings",
    "distill",
    "load_corpus",
    "main",
    "matryoshka_loss",
]

log = logging.getLogger(__name__)

# WordNet retrieval sets the report may use (n_docs, n_queries); all are held out of training.
WORDNET_EVAL_SIZES = ((10000, 2000), (4000, 1000))
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "merges.txt",
    "vocab.json",
    "added_tokens.json",
)


# ------------------------------------------------------------------------------ corpus
def report_synset_ids() -> set[str]:
    """Every synset of the WordNet retrieval sets the report may use: never trained on."""
    from aegis_serve.data.wordnet import retrieval_synset_ids

    held_out: set[str] = set()
    for n_docs, n_queries in WORDNET_EVAL_SIZES:
        held_out |= retrieval_synset_ids(n_docs, n_queries)
    return held_out


def load_corpus(spec: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Texts from a file (one per line) or a package corpus: ``wordnet`` (eval synsets held out).

    ``wordnet`` is ``distillation_sentences`` minus every synset of the default WordNet
    retrieval set, so the report's dataset is never the distillation corpus.
    """
    if spec == "wordnet":
        from aegis_serve.data.wordnet import distillation_sentences

        return distillation_sentences(limit, seed=seed, exclude_offsets=report_synset_ids())
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"corpus {spec!r} is neither 'wordnet' nor a text file")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    return texts if limit is None else texts[:limit]


# ------------------------------------------------------------------------------ teacher cache
def _texts_sha(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def embedding_cache_path(model: Embedder, texts: Sequence[str], prompt_name: str | None) -> Path:
    """Where ``cache_teacher_embeddings`` keeps one model's vectors of one list of texts."""
    key = f"{weights_fingerprint(model.cfg.root)}-{_texts_sha(texts)[:16]}-{prompt_name or 'none'}"
    return cache_dir() / "embeddings" / f"{model.space.model_id}-{key}"


def cache_teacher_embeddings(
    teacher: Embedder,
    texts: Sequence[str],
    cache: Path,
    *,
    prompt_name: str | None = None,
    shard_size: int = 2048,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Teacher vectors of ``texts`` as (n, dim) float32, embedded once into resumable shards.

    ``manifest.json`` pins the texts (sha256), the teacher and the prompt; a shard file exists
    only once complete (written to a temp name, then renamed), so a killed run redoes at most
    one shard. A manifest that does not match starts the cache over.
    """
    cache.mkdir(parents=True, exist_ok=True)
    manifest = {
        "texts_sha256": _texts_sha(texts),
        "n": len(texts),
        "teacher": weights_fingerprint(teacher.cfg.root),
        "teacher_space": teacher.space.space_id,
        "prompt_name": prompt_name,
        "shard_size": shard_size,
        "dim": teacher.dim,
    }
    mpath = cache / "manifest.json"
    if mpath.is_file() and json.loads(mpath.read_text()) != manifest:
        log.warning("teacher cache %s belongs to other texts/teacher; starting over", cache)
        for old in cache.glob("shard_*.npy"):
            old.unlink()
    mpath.write_text(json.dumps(manifest, indent=1))
    n_shards = math.ceil(len(texts) / shard_size)
    shards = [cache / f"shard_{i:05d}.npy" for i in range(n_shards)]
    done = sum(
        min(shard_size, len(texts) - i * shard_size) for i, s in enumerate(shards) if s.is_file()
    )
    with tqdm(
        total=len(texts), initial=done, desc="teacher embeddings", unit="text", disable=not progress
    ) as bar:
        for i, shard in enumerate(shards):
            if shard.is_file():
                continue
            chunk = texts[i * shard_size : (i + 1) * shard_size]
            emb = teacher.embed(chunk, prompt_name=prompt_name, batch_size=batch_size)
            tmp = shard.with_name(f".{shard.name}.tmp.npy")
            np.save(tmp, emb.astype(np.float32))
            os.replace(tmp, shard)
            bar.update(len(chunk))
    return np.concatenate([np.load(s) for s in shards]) if shards else np.zeros((0, teacher.dim))


def embed_cached(model: Embedder, texts: Sequence[str], role: str, progress: bool) -> np.ndarray:
    """``model``'s vectors of ``texts`` in one role (its prompt when it has one), cached."""
    prompt = role if role in model.prompts else None
    cache = embedding_cache_path(model, texts, prompt)
    return cache_teacher_embeddings(model, texts, cache, prompt_name=prompt, progress=progress)


# ------------------------------------------------------------------------------ model
class StudentModel(torch.nn.Module):
    """Trainable Transformer → Pooling → Dense of a student directory (normalization in loss)."""

    def __init__(self, embedder: Embedder, out_dim: int, dense_init: Path | None) -> None:
        super().__init__()
        self.emb = embedder
        self.transformer = embedder.model
        hidden = int(embedder.hf_config.hidden_size)
        if embedder.dense:
            if len(embedder.dense) != 1 or embedder.dense[0][1] != "identity":
                raise ValueError("only a student with one identity Dense (or none) is supported")
            self.dense: torch.nn.Linear | None = embedder.dense[0][0]
        elif hidden != out_dim:
            self.dense = torch.nn.Linear(hidden, out_dim)
            if dense_init is not None and dense_init.is_file():
                state = {
                    k.removeprefix("linear."): v for k, v in load_file(str(dense_init)).items()
                }
                if tuple(state["weight"].shape) == (out_dim, hidden):
                    self.dense.load_state_dict(state)
                    log.info("Dense initialised from %s", dense_init)
                else:
                    log.info(
                        "%s has shape %s; Dense starts random", dense_init, state["weight"].shape
                    )
        else:
            self.dense = None
        self.out_dim = out_dim if self.dense is not None else hidden

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        pooled = self.emb._pool(hidden.float(), batch["pool_mask"], batch["attention_mask"])
        return self.dense(pooled) if self.dense is not None else pooled


def matryoshka_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    dims: Sequence[int],
    mse_weight: float,
    contrastive_weight: float = 0.0,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    score_weight: float = 0.0,
    score_temperature: float = 0.05,
    cos_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[int, float]]:
    """Σ over Matryoshka dims of 1 - cos of the prefixes, plus λ·MSE of the unit vectors.

    The teacher rows may be unit vectors of the full width; each prefix is compared by cosine,
    which renormalizes both sides exactly as the gateway does when it truncates. With
    ``contrastive_weight``, each prefix also gets an InfoNCE term: the student vector must
    score its own teacher vector above the teacher vectors of the rest of the batch and of
    ``negatives`` (more teacher rows, free because they are cached). Cosine alone on a small
    corpus mostly matches the direction all teacher vectors share and loses the differences
    that rank documents (docs/alignment.md measures it); the ranking term keeps them.

    With ``score_weight``, each prefix also gets a listwise score-distillation term: over the
    same pool of teacher vectors minus the text's own, the student's softmax of similarities
    must match the teacher's (KL(teacher ‖ student)). That is the asymmetric search itself —
    a student query scored against teacher documents must rank them as the teacher's query
    would — and, unlike InfoNCE, it does not push the student away from the teacher vectors
    of texts the teacher itself finds similar.
    """
    total = student.new_zeros(())
    per_dim: dict[int, float] = {}
    pool = teacher if negatives is None else torch.cat([teacher, negatives])
    labels = torch.arange(len(student), device=student.device)
    for d in dims:
        s_d = F.normalize(student[:, :d], dim=1)
        t_d = F.normalize(teacher[:, :d], dim=1)
        cos = (s_d * t_d).sum(dim=1).mean()
        total = total + cos_weight * (1.0 - cos)
        per_dim[d] = float(cos.detach())
        if contrastive_weight or score_weight:
            pool_d = F.normalize(pool[:, :d], dim=1)
        if contrastive_weight:
            logits = s_d @ pool_d.T / temperature
            total = total + contrastive_weight * F.cross_entropy(logits, labels)
        if score_weight:
            total = total + score_weight * _score_kl(s_d, t_d, pool_d, score_temperature)
    if mse_weight:
        total = total + mse_weight * F.mse_loss(
            F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        )
    return total, per_dim


def _score_kl(
    s_d: torch.Tensor, t_d: torch.Tensor, pool_d: torch.Tensor, tau: float
) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmax over ``pool_d``, leaving out each row's own (i, i)."""
    own = torch.zeros(len(s_d), len(pool_d), dtype=torch.bool, device=s_d.device)
    own[torch.arange(len(s_d)), torch.arange(len(s_d))] = True
    s_log = F.log_softmax((s_d @ pool_d.T / tau).masked_fill(own, float("-inf")), dim=1)
    t_log = F.log_softmax((t_d @ pool_d.T / tau).masked_fill(own, float("-inf")), dim=1)
    kl = t_log.exp() * (t_log - s_log)
    return kl.masked_fill(own, 0.0).sum(dim=1).mean()


# ------------------------------------------------------------------------------ config / run
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
    teacher_batch_size: int = 128
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


def _batch(emb: Embedder, texts: Sequence[str], prompt: str, max_len: int) -> dict[str, Any]:
    """Padded training batch; ids beyond ``max_len`` are cut, keeping the closing token."""
    items = emb.tokenize(texts, prompt)
    cut = []
    for it in items:
        if len(it.ids) > max_len:
            it = type(it)(
                ids=it.ids[: max_len - 1] + it.ids[-1:],
                prompt_tokens=min(it.prompt_tokens, max_len - 2),
                original_tokens=it.original_tokens,
                truncated=True,
            )
        cut.append(it)
    batch = emb._collate_padded(cut)
    return {k: v.to(emb.device) for k, v in batch.items()}


def teacher_neighbours(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """For each of ``rows``, the ``k`` other rows (of ``rows``) nearest by teacher cosine.

    They join the pool of the contrastive and score terms: random texts are mostly unrelated,
    and ranking the top of a result list is decided among near neighbours.
    """
    sub = vectors[rows]
    out = np.zeros((len(rows), k), dtype=np.int64)
    for c in range(0, len(rows), 2048):
        sim = sub[c : c + 2048] @ sub.T
        sim[np.arange(len(sim)), np.arange(c, c + len(sim))] = -np.inf
        out[c : c + 2048] = np.argpartition(-sim, k, axis=1)[:, :k]
    return rows[out]


# What --dev-metric selects on: full-dim nDCG@10, its mean over the Matryoshka dims (the
# gateway serves every dim, so a student that only holds up at full width is not the best one),
# or the mean over dims of float32 and binary (sign bits) nDCG@10 together.
DEV_METRICS = {
    "ndcg_at_10": "student_teacher_ndcg_at_10",
    "mean_ndcg_at_10": "mean_ndcg_at_10",
    "mean_float_binary_ndcg_at_10": "mean_float_binary_ndcg_at_10",
}


@dataclass
class DevSet:
    """A retrieval set held out of training, scored while training to pick the step to keep."""

    queries: list[str]
    documents: list[str]
    relevant: list[int]
    texts: set[str]
    teacher_queries: np.ndarray
    teacher_documents: np.ndarray


DevTexts = tuple[list[str], list[str], list[int], set[str]]


def read_dev_set(name: str) -> DevTexts:
    """(queries, documents, relevant, every text to keep out of training) of ``wordnet-dev``
    (500 usage examples → 2,000 definitions, outside every report set) or of a JSON file like
    ``eval --dataset PATH`` takes. Read before any model loads, so a bad name fails at once."""
    if name == "wordnet-dev":
        from aegis_serve.data.wordnet import dev_retrieval_set

        q, d, rel, texts = dev_retrieval_set(report_synset_ids())
    elif Path(name).is_file():
        q, d, rel, _ = load_dataset(name)
        texts = set(q) | set(d)
    else:
        raise ValueError(f"dev set {name!r} is neither 'wordnet-dev' nor a JSON file")
    return q, d, rel, texts


def embed_dev_set(dev_texts: DevTexts, teacher: Embedder, progress: bool) -> DevSet:
    """The dev set with the teacher's vectors of its queries and documents (cached)."""
    q, d, rel, texts = dev_texts
    t_q = embed_cached(teacher, q, "query", progress)
    t_d = embed_cached(teacher, d, "document", progress)
    return DevSet(q, d, rel, texts, t_q, t_d)


def _lr_lambda(plan: dict[str, int]) -> Any:
    """Linear warmup then linear decay to 0 at ``plan["total"]`` (which a time budget may cut)."""

    def f(step: int) -> float:
        total, warmup = plan["total"], plan["warmup"]
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


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


def write_student_dir(
    model: StudentModel,
    student_dir: Path,
    out: Path,
    space: dict[str, Any],
    prompts: dict[str, str],
) -> Path:
    """ST directory: fp16 transformer at the root, Pooling copied, fp32 Dense, Normalize.

    Same layout as ``align.write_aligned_student`` (modules 0..3, teacher prompts, space
    manifest), but every file is a real copy so the directory can be committed or shipped.
    """
    base = read_st_config(student_dir)
    out.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model.transformer).to(torch.float16)
    half.save_pretrained(str(out), safe_serialization=True)
    for name in _TOKENIZER_FILES:
        src = base.transformer_dir / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    sbert = student_dir / "sentence_bert_config.json"
    if sbert.is_file():
        shutil.copyfile(sbert, out / "sentence_bert_config.json")
    modules = json.loads((student_dir / "modules.json").read_text())
    pooling_rel = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    shutil.copytree(student_dir / pooling_rel, out / "1_Pooling", dirs_exist_ok=True)
    kinds = [("Transformer", ""), ("Pooling", "1_Pooling")]
    if model.dense is not None:
        lin = model.dense
        bias = lin.bias.detach().float().cpu().numpy() if lin.bias is not None else None
        write_dense(out / "2_Dense", lin.weight.detach().float().cpu().numpy(), bias)
        kinds.append(("Dense", "2_Dense"))
    norm = out / f"{len(kinds)}_Normalize"
    norm.mkdir(exist_ok=True)
    kinds.append(("Normalize", norm.name))
    write_modules(out, kinds)
    write_prompts(out, prompts)
    write_json(out / SPACE_MANIFEST, {**space, "dimensions": model.out_dim})
    return out


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Run one distillation; returns the summary also written to ``training_summary.json``."""
    from aegis_serve.models.resolve import resolve_model

    started = time.perf_counter()
    _seed_everything(cfg.seed)
    device = _device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev_texts = read_dev_set(cfg.dev_set) if cfg.dev_set else None
    teacher_path = resolve_model(cfg.teacher, progress=cfg.progress)
    student_path = resolve_model(cfg.student, progress=cfg.progress)
    out = Path(cfg.out)
    texts = load_corpus(cfg.corpus, cfg.sentences, cfg.seed)
    if len(texts) < 4:
        raise ValueError(f"corpus {cfg.corpus!r} gives only {len(texts)} texts")

    teacher = Embedder(teacher_path, device=device, dtype="float32")
    prompt_name = "query" if "query" in teacher.prompts else None
    prompts = dict(teacher.prompts)
    dims = [int(d) for d in (cfg.dims or teacher.space.matryoshka_dims)]
    space = {
        "space_id": teacher.space.space_id,
        "model_id": cfg.model_id or f"{Path(student_path).resolve().name}-distilled",
        "matryoshka_dims": list(teacher.space.matryoshka_dims),
    }
    cache = Path(cfg.cache) if cfg.cache else embedding_cache_path(teacher, texts, prompt_name)
    t0 = time.perf_counter()
    t_emb = cache_teacher_embeddings(
        teacher,
        texts,
        cache,
        prompt_name=prompt_name,
        batch_size=cfg.teacher_batch_size,
        progress=cfg.progress,
    )
    teacher_seconds = time.perf_counter() - t0
    dev = embed_dev_set(dev_texts, teacher, cfg.progress) if dev_texts else None
    del teacher

    student_emb = Embedder(student_path, device=device, dtype="float32")
    student_prompt = prompts.get(prompt_name, "") if prompt_name else ""
    doc_prompt = prompts.get("document", "")
    if cfg.student_layers:
        try:
            student_emb.keep_first_layers(cfg.student_layers)
        except ValueError:
            raise ValueError(
                f"--student-layers {cfg.student_layers}: the student has "
                f"{student_emb.num_layers} layers"
            ) from None
    model = StudentModel(
        student_emb, t_emb.shape[1], Path(cfg.dense_init) if cfg.dense_init else None
    ).to(device)
    if cfg.freeze_word_embeddings:
        model.transformer.get_input_embeddings().weight.requires_grad_(False)
    if model.out_dim != t_emb.shape[1]:
        raise ValueError(f"student outputs {model.out_dim} dims, teacher {t_emb.shape[1]}")

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))
    n_val = min(max(1, round(len(texts) * cfg.val_fraction)), 1024) if cfg.val_fraction else 0
    if dev is not None:
        order = order[[texts[i] not in dev.texts for i in order]]
    val_idx, train_idx = order[:n_val], order[n_val:]
    target = torch.from_numpy(t_emb).float()
    nbrs = None  # by text index: the training texts nearest to each training text
    if cfg.neighbours:
        nbrs = np.zeros((len(texts), cfg.neighbours), dtype=np.int64)
        nbrs[train_idx] = teacher_neighbours(t_emb, train_idx, cfg.neighbours)

    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    head = list(model.dense.parameters()) if model.dense is not None else []
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    groups = [{"params": body, "lr": cfg.lr}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_multiplier})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = {"total": total_steps, "warmup": round(total_steps * cfg.warmup_fraction)}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(plan))

    def evaluate() -> tuple[float, dict[int, float]]:
        model.eval()
        losses, cos_sum, n = 0.0, dict.fromkeys(dims, 0.0), 0
        with torch.no_grad():
            for s in range(0, n_val, 128):
                idx = val_idx[s : s + 128]
                pred = model(
                    _batch(student_emb, [texts[i] for i in idx], student_prompt, cfg.max_seq_len)
                )
                loss, per = matryoshka_loss(
                    pred,
                    target[idx].to(device),
                    dims,
                    cfg.mse_weight,
                    cfg.contrastive_weight,
                    None,
                    cfg.temperature,
                    cfg.score_weight,
                    cfg.score_temperature,
                    cfg.cos_weight,
                )
                losses += float(loss) * len(idx)
                for d in dims:
                    cos_sum[d] += per[d] * len(idx)
                n += len(idx)
        model.train()
        return losses / max(1, n), {d: c / max(1, n) for d, c in cos_sum.items()}

    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.jsonl"
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    # The teacher's dev documents as an index scores them at each dim and encoding (fixed).
    dev_teacher_docs: dict[tuple[int, str], np.ndarray] = {}
    if dev is not None:
        dev_teacher_docs = {
            (d, enc): score_vectors(dev.teacher_documents, d, enc, None)
            for d in dims
            for enc in ("float32", "binary")
        }

    def dev_score() -> dict[str, float]:
        """nDCG@10 of student queries against teacher documents at every Matryoshka dim, and
        against student documents at full dim; ``dev_metric`` picks the one to select on."""
        assert dev is not None
        model.eval()
        vecs = []
        with torch.no_grad():
            for group, prompt in ((dev.queries, student_prompt), (dev.documents, doc_prompt)):
                parts = [
                    model(_batch(student_emb, group[s : s + 128], prompt, 512)).cpu()
                    for s in range(0, len(group), 128)
                ]
                vecs.append(torch.cat(parts).float().numpy())
        model.train()
        per_dim = {
            (d, enc): evaluate_pair(
                score_vectors(vecs[0], d, enc, None), teacher_docs, dev.relevant
            )[0]["ndcg_at_10"]
            for (d, enc), teacher_docs in dev_teacher_docs.items()
        }
        full = max(dims)
        s_s = evaluate_pair(
            score_vectors(vecs[0], full, "float32", None),
            score_vectors(vecs[1], full, "float32", None),
            dev.relevant,
        )[0]["ndcg_at_10"]
        floats = [v for (_, enc), v in per_dim.items() if enc == "float32"]
        return {
            "student_teacher_ndcg_at_10": per_dim[(full, "float32")],
            "student_teacher_ndcg_at_10_by_dim": {str(d): per_dim[(d, "float32")] for d in dims},
            "binary_ndcg_at_10_by_dim": {str(d): per_dim[(d, "binary")] for d in dims},
            "mean_ndcg_at_10": float(np.mean(floats)),
            "mean_float_binary_ndcg_at_10": float(np.mean(list(per_dim.values()))),
            "student_student_ndcg_at_10": s_s,
        }

    best: dict[str, Any] = {}

    def check_dev(at: int) -> None:
        score = dev_score()
        record({"kind": "dev", "step": at, **score})
        key = DEV_METRICS[cfg.dev_metric]
        if not best or score[key] > best["score"]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best.update(step=at, score=score[key], state=state)

    log_path.write_text("")
    val0, cos0 = evaluate() if n_val else (float("nan"), {})
    record({"kind": "val", "step": 0, "loss": val0, "cos": {str(d): c for d, c in cos0.items()}})
    if dev is not None:
        check_dev(0)
    model.train()
    t_train = time.perf_counter()
    step = 0
    bar = tqdm(total=total_steps, desc="distilling", unit="step", disable=not cfg.progress)
    gen = np.random.default_rng(cfg.seed + 1)
    while step < total_steps:
        perm = train_idx[gen.permutation(len(train_idx))]
        for s in range(0, len(perm), cfg.batch_size):
            if step >= total_steps:
                break
            if cfg.max_train_seconds and step >= 10 and step % 10 == 0:
                # Fit the schedule to the time budget (rechecked, the CPU may be shared), so
                # the learning rate still decays to 0 when the budget runs out.
                elapsed = time.perf_counter() - t_train
                fits = step + int((cfg.max_train_seconds - elapsed) / (elapsed / step))
                if fits < total_steps:
                    log.warning("time budget: %d of %d steps", fits, total_steps)
                    total_steps = plan["total"] = max(fits, step + 1)
                    bar.total = total_steps
            idx = perm[s : s + cfg.batch_size]
            batch = _batch(student_emb, [texts[i] for i in idx], student_prompt, cfg.max_seq_len)
            pred = model(batch)
            negatives = None
            if (cfg.contrastive_weight or cfg.score_weight) and (cfg.negatives or nbrs is not None):
                extra = gen.integers(0, len(train_idx), size=min(cfg.negatives, len(train_idx)))
                extra = train_idx[extra]
                if nbrs is not None:
                    extra = np.concatenate([nbrs[idx].ravel(), extra])
                extra = np.unique(extra[~np.isin(extra, idx)])
                negatives = target[extra].to(device)
            loss, per = matryoshka_loss(
                pred,
                target[idx].to(device),
                dims,
                cfg.mse_weight,
                cfg.contrastive_weight,
                negatives,
                cfg.temperature,
                cfg.score_weight,
                cfg.score_temperature,
                cfg.cos_weight,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            record(
                {
                    "kind": "train",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": float(loss.detach()),
                    "lr": sched.get_last_lr()[0],
                    "cos": {str(d): round(c, 5) for d, c in per.items()},
                    "elapsed_s": round(time.perf_counter() - t_train, 2),
                }
            )
            if n_val and (step % cfg.eval_every == 0 or step == total_steps):
                vl, vc = evaluate()
                record(
                    {
                        "kind": "val",
                        "step": step,
                        "loss": vl,
                        "cos": {str(d): c for d, c in vc.items()},
                    }
                )
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{vl:.4f}")
            if dev is not None and (step % cfg.eval_every == 0 or step == total_steps):
                check_dev(step)
    bar.close()
    train_seconds = time.perf_counter() - t_train
    dev_info: dict[str, Any] = {}
    if dev is not None:
        if best["step"] != step:
            model.load_state_dict(best["state"])
        curve = [r for r in rows if r["kind"] == "dev"]
        dev_info = {
            "set": cfg.dev_set,
            "metric": cfg.dev_metric,
            "start": curve[0][DEV_METRICS[cfg.dev_metric]],
            "kept_step": best["step"],
            "kept": best["score"],
            "kept_scores": next(r for r in curve if r["step"] == best["step"]),
            "improved": best["step"] > 0,
        }
        if best["step"] == 0:
            log.warning(
                "no training step beat the starting student on %s (%s %.4f): the output is "
                "the starting student",
                cfg.dev_set,
                cfg.dev_metric,
                best["score"],
            )
    model.eval()
    write_student_dir(model, student_path, out, space, prompts)
    calib_info: dict[str, Any] = {}
    if cfg.calibration:
        dims_all = space["matryoshka_dims"]
        cal = {"space_id": space["space_id"], **compute_calibration(t_emb, dims_all)}
        write_json(out / CALIBRATION_FILE, cal)
        calib_info = {"source": "teacher embeddings of the distillation corpus", "n": len(t_emb)}
    _plot(rows, out / "loss.png")
    val_rows = [r for r in rows if r["kind"] == "val"]
    summary = {
        "config": asdict(cfg),
        "teacher_dir": str(teacher_path),
        "student_dir": str(student_path),
        "space": space,
        "texts": len(texts),
        "train_texts": len(train_idx),
        "val_texts": int(n_val),
        "steps": step,
        "device": device,
        "teacher_embed_s": round(teacher_seconds, 1),
        "train_s": round(train_seconds, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "val_loss_first": val_rows[0]["loss"] if val_rows else None,
        "val_loss_last": val_rows[-1]["loss"] if val_rows else None,
        "val_cos_last": val_rows[-1]["cos"] if val_rows else None,
        "calibration": calib_info,
        "dev": dev_info,
        "command": "aegis-serve " + " ".join(sys.argv[1:]),
    }
    write_json(out / "training_summary.json", summary)
    return summary


# ------------------------------------------------------------------------------ command
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
        dev_set=ns.dev_set or None,
        head_lr_multiplier=ns.head_lr_multiplier,
        dev_metric=ns.dev_metric,
        student_layers=ns.student_layers,
        freeze_word_embeddings=ns.freeze_word_embeddings,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aegis_serve.training.distill``: the same flags as ``aegis-serve distill``."""
    from aegis_serve.training import add_arguments

    p = argparse.ArgumentParser(prog="python -m aegis_serve.training.distill", description=__doc__)
    add_arguments(p)
    summary = distill(config_from_args(p.parse_args(argv)))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
