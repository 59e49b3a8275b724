"""Model embeddings of text lists, computed once and kept on disk as resumable shards.

Distillation (teacher targets), evaluation and the backends bench all embed the same long text
lists with the same models, so the vectors are cached under ``cache_dir()/embeddings`` keyed by
the model weights, the texts and the prompt. It lives at the top of the lab, not in training,
because evaluation and bench use it too (and evaluation must not import training).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from aegis_serve.cache import cache_dir
from aegis_serve.models.st_dir import weights_fingerprint

if TYPE_CHECKING:
    from aegis_serve.models.embedder import Embedder

__all__ = ["cache_teacher_embeddings", "embed_cached", "embedding_cache_path"]

log = logging.getLogger(__name__)


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
