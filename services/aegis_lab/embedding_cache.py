"""Model embeddings of text lists, computed once and kept on disk as resumable fp16 shards.

Distillation (teacher targets), evaluation and the backends bench all embed the same long text
lists with the same models, so the vectors are cached under ``cache_dir()/embeddings`` keyed by
the model weights, the texts, the prompt and the token cap. It lives at the top of the lab, not
in training, because evaluation and bench use it too (and evaluation must not import training).

Two cores can afford a million teacher vectors only if nothing is wasted: the model runs on its
fastest exact backend (ONNX Runtime when installed, the same vectors as torch to ~1e-6), texts
are cut at a short token cap (queries and short passages rarely need more), each shard is
embedded in length-sorted batches bounded by a token budget (little padding), and vectors are
stored as float16 (the distillation target is a unit vector; fp16 keeps ~3 significant digits).
A shard file exists only once complete, so a killed run loses at most one shard; a corrupt
shard is named in the log, deleted and computed again; ``stats.json`` records texts/s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from aegis_serve.cache import cache_dir
from aegis_serve.models.st_dir import weights_fingerprint

if TYPE_CHECKING:
    from aegis_serve.models.embedder import Embedder

__all__ = [
    "CacheError",
    "cache_teacher_embeddings",
    "embed_cached",
    "embed_texts",
    "embedding_cache_path",
]

log = logging.getLogger(__name__)

# Tokens per forward pass (padded): large enough to amortize per-call overhead, small enough
# that a batch of short texts stays in cache; texts per pass are capped too.
BATCH_TOKENS = 8192
BATCH_TEXTS = 256


class CacheError(RuntimeError):
    """The cache directory cannot be used (not writable, or a shard cannot be repaired)."""


def _texts_sha(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def embedding_cache_path(
    model: Embedder, texts: Sequence[str], prompt_name: str | None, max_tokens: int | None = None
) -> Path:
    """Where ``cache_teacher_embeddings`` keeps one model's vectors of one list of texts."""
    key = f"{weights_fingerprint(model.cfg.root)}-{_texts_sha(texts)[:16]}-{prompt_name or 'none'}"
    if max_tokens:
        key += f"-t{max_tokens}"
    return cache_dir() / "embeddings" / f"{model.space.model_id}-{key}"


def embed_texts(
    model: Embedder,
    texts: Sequence[str],
    prompt_name: str | None = None,
    max_tokens: int | None = None,
    batch_tokens: int = BATCH_TOKENS,
    batch_texts: int = BATCH_TEXTS,
) -> np.ndarray:
    """(n, dim) float32 vectors: tokenized once, longest first, batched by a token budget."""
    items = model.tokenize(texts, model.prompt_for(prompt_name), max_tokens)
    order = sorted(range(len(items)), key=lambda i: -len(items[i].ids))
    out = np.zeros((len(items), model.dim), dtype=np.float32)
    start = 0
    while start < len(order):
        width = len(items[order[start]].ids)  # the longest text left sets the padded width
        size = max(1, min(batch_texts, batch_tokens // max(1, width)))
        chunk = order[start : start + size]
        out[chunk] = model.forward(model.collate([items[i] for i in chunk]))
        start += size
    return out


def _load_shard(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """A complete shard's vectors, or None (logged) when it is unreadable or mis-shaped."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("shard %s is corrupt (%s); it will be computed again", path, exc)
        return None
    if data.shape != (rows, dim):
        log.warning("shard %s has shape %s, expected %s; computing it again", path, data.shape,
                    (rows, dim))  # fmt: skip
        return None
    return data


def cache_teacher_embeddings(
    teacher: Embedder,
    texts: Sequence[str],
    cache: Path,
    *,
    prompt_name: str | None = None,
    shard_size: int = 4096,
    max_tokens: int | None = None,
    batch_tokens: int = BATCH_TOKENS,
    dtype: str = "float16",
    progress: bool = True,
) -> np.ndarray:
    """Teacher vectors of ``texts`` as (n, dim) ``dtype``, embedded once into resumable shards.

    ``manifest.json`` pins the texts (sha256), the teacher, its backend, the prompt, the token
    cap and the dtype; a manifest that does not match starts the cache over (a warning says
    why). float16 for training targets (half the disk and memory); float32 where exact ties
    matter (evaluation).
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the embedding cache {cache}: {exc}") from None
    manifest = {
        "texts_sha256": _texts_sha(texts),
        "n": len(texts),
        "teacher": weights_fingerprint(teacher.cfg.root),
        "teacher_space": teacher.space.space_id,
        "backend": teacher.backend,
        "prompt_name": prompt_name,
        "max_tokens": max_tokens,
        "shard_size": shard_size,
        "dim": teacher.dim,
        "dtype": dtype,
    }
    mpath = cache / "manifest.json"
    if mpath.is_file() and json.loads(mpath.read_text()) != manifest:
        log.warning(
            "teacher cache %s belongs to other texts/teacher/settings; starting over", cache
        )
        for old in cache.glob("shard_*.npy"):
            old.unlink()
    mpath.write_text(json.dumps(manifest, indent=1))
    n_shards = math.ceil(len(texts) / shard_size)
    bounds = [(i * shard_size, min(len(texts), (i + 1) * shard_size)) for i in range(n_shards)]
    shards = [cache / f"shard_{i:05d}.npy" for i in range(n_shards)]
    parts: list[np.ndarray | None] = [
        _load_shard(s, hi - lo, teacher.dim) if s.is_file() else None
        for s, (lo, hi) in zip(shards, bounds, strict=True)
    ]
    done = sum(hi - lo for part, (lo, hi) in zip(parts, bounds, strict=True) if part is not None)
    started, computed = time.perf_counter(), 0
    with tqdm(
        total=len(texts), initial=done, desc="teacher embeddings", unit="text", disable=not progress
    ) as bar:
        for i, (shard, (lo, hi)) in enumerate(zip(shards, bounds, strict=True)):
            if parts[i] is not None:
                continue
            emb = embed_texts(teacher, texts[lo:hi], prompt_name, max_tokens, batch_tokens)
            parts[i] = emb.astype(dtype)
            tmp = shard.with_name(f".{shard.name}.tmp.npy")
            np.save(tmp, parts[i])
            os.replace(tmp, shard)
            computed += hi - lo
            bar.update(hi - lo)
            bar.set_postfix(texts_per_s=f"{computed / (time.perf_counter() - started):.0f}")
    if computed:
        seconds = time.perf_counter() - started
        stats = {"computed_texts": computed, "seconds": round(seconds, 1),
                 "texts_per_s": round(computed / seconds, 1), "backend": teacher.backend,
                 "threads": os.environ.get("OMP_NUM_THREADS", "")}  # fmt: skip
        (cache / "stats.json").write_text(json.dumps(stats, indent=1))
        log.info("teacher cache %s: %d texts in %.0f s (%.0f texts/s, %s)", cache.name, computed,
                 seconds, computed / seconds, teacher.backend)  # fmt: skip
    if not parts:
        return np.zeros((0, teacher.dim), dtype=dtype)
    return np.concatenate([p for p in parts if p is not None])


def embed_cached(
    model: Embedder,
    texts: Sequence[str],
    role: str,
    progress: bool,
    max_tokens: int | None = None,
) -> np.ndarray:
    """``model``'s float32 vectors of ``texts`` in one role (its prompt when it has one),
    cached."""
    prompt = role if role in model.prompts else None
    cache = embedding_cache_path(model, texts, prompt, max_tokens)
    return cache_teacher_embeddings(
        model, texts, cache, prompt_name=prompt, max_tokens=max_tokens, dtype="float32",
        progress=progress,
    )  # fmt: skip
