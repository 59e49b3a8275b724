"""The LS-aligned query student: MiniLM plus a committed Dense map into the teacher's space.

The student (all-MiniLM-L6-v2, 384-d) and the document teacher (all-mpnet-base-v2, 768-d)
write into different spaces; a Dense 384→768 layer fitted so that
normalize(student(x) @ W + b) ≈ teacher(x) carries student queries into the teacher's space.
The fitted weights are a small committed artifact (``assets/aligned-student``); this module
assembles the serving directory from them plus the student package, without any model
computation, so an encoder can call it at start. Fitting and measuring the map is lab work
(``aegis-lab align``, ``aegis_lab/training/linear_map.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

from aegis_serve.cache import cache_dir, cached_build
from aegis_serve.models.canaries import CANARIES_FILE
from aegis_serve.models.registry_weights import student_base_dir
from aegis_serve.models.st_dir import (
    SPACE_MANIFEST,
    ModelDirError,
    copy_tree,
    read_st_config,
    write_dense,
    write_json,
    write_modules,
    write_prompts,
)

__all__ = [
    "ALIGNED_MODEL_ID",
    "ALIGNED_WEIGHTS",
    "ASSET_DIR",
    "aligned_student_dir",
    "file_sha256",
    "read_dense_weights",
    "write_aligned_student",
]

log = logging.getLogger(__name__)

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "aligned-student"
ALIGNED_WEIGHTS = ASSET_DIR / "dense.safetensors"
ALIGNED_MODEL_ID = "all-minilm-l6-v2-aligned-mpnet"
ALIGNED_CACHE_NAME = "all-minilm-l6-v2-aligned"
# Files of a base ST directory that describe the whole pipeline, not its Transformer module.
_NOT_TRANSFORMER = frozenset(
    {
        "modules.json",
        "config_sentence_transformers.json",
        SPACE_MANIFEST,
        "calibration.json",
        CANARIES_FILE,
        "README.md",
        "data_config.json",
    }
)


def read_dense_weights(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The Dense weight (out, in), bias (out,) and the decoded metadata of a weights file."""
    with safe_open(str(path), framework="numpy") as fh:
        weight, bias = fh.get_tensor("linear.weight"), fh.get_tensor("linear.bias")
        raw = fh.metadata() or {}
    meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    return weight, bias, meta


def _link_or_copy(src: Path, dst: Path, link: bool) -> None:
    """Symlink to the resolved source (cheap, fine for read-only packages), else copy bytes.

    ``copyfile`` rather than ``copy2``: permission bits of a read-only package must not make
    the cache read-only, or later rebuilds could not replace it.
    """
    src = src.resolve()
    if link:
        try:
            os.symlink(src, dst)
            return
        except OSError as exc:
            log.info("cannot symlink %s (%s); copying", src, exc)
    shutil.copyfile(src, dst)


def write_aligned_student(
    base_dir: Path,
    weights: Path,
    out_dir: Path,
    space: dict[str, Any],
    *,
    prompts: dict[str, str] | None = None,
    link: bool = True,
) -> Path:
    """Assemble a complete ST directory: base Transformer + Pooling, then Dense, Normalize.

    The base Transformer's files are symlinked (or copied with ``link=False`` or where links
    fail), the pooling config is copied, ``weights`` becomes ``2_Dense``. ``space`` is written
    as ``aegis_space.json`` and must name the space the map targets (``space_id``); its
    ``dimensions`` is filled from the weights. ``prompts`` should be the teacher's, so queries
    are phrased the way the documents' encoder expects (mpnet has none).
    """
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if not space.get("space_id"):
        raise ValueError("space must declare the target space_id")
    base = read_st_config(base_dir)
    if base.dense:
        raise ModelDirError(f"{base_dir}: the base already has Dense modules; align a bare one")
    weight, bias, _ = read_dense_weights(weights)
    out_features, in_features = weight.shape
    if bias.shape != (out_features,):
        raise ModelDirError(f"{weights}: bias {bias.shape} does not match weight {weight.shape}")
    hidden = json.loads((base.transformer_dir / "config.json").read_text())["hidden_size"]
    if in_features != int(hidden):
        raise ModelDirError(
            f"{weights}: Dense expects {in_features}-d input, {base_dir} pools {hidden}-d"
        )
    declared = space.get("dimensions")
    if declared is not None and int(declared) != out_features:
        raise ValueError(f"space says {declared} dims but the Dense layer outputs {out_features}")

    modules = json.loads((base_dir / "modules.json").read_text())
    by_kind = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    transformer_rel = by_kind["Transformer"].get("path", "")
    pooling_rel = by_kind["Pooling"]["path"]

    out_dir.mkdir(parents=True, exist_ok=True)
    t_out = out_dir / transformer_rel
    t_out.mkdir(parents=True, exist_ok=True)
    module_dirs = {m.get("path", "") for m in modules if m.get("path")}
    for item in sorted(base.transformer_dir.iterdir()):
        at_root = transformer_rel == ""
        skip = item.name.startswith(".") or (
            at_root and (item.name in _NOT_TRANSFORMER or item.name in module_dirs)
        )
        if item.is_file() and not skip:
            _link_or_copy(item, t_out / item.name, link)
    copy_tree(base_dir / pooling_rel, out_dir / pooling_rel)

    # Re-saved rather than copied: only the two tensors, no fit metadata, in the module folder.
    write_dense(out_dir / "2_Dense", weight, bias)
    (out_dir / "3_Normalize").mkdir(exist_ok=True)
    write_modules(
        out_dir,
        [
            ("Transformer", transformer_rel),
            ("Pooling", pooling_rel),
            ("Dense", "2_Dense"),
            ("Normalize", "3_Normalize"),
        ],
    )
    write_prompts(out_dir, prompts or {})
    manifest = {"model_id": ALIGNED_MODEL_ID, **space, "dimensions": int(out_features)}
    write_json(out_dir / SPACE_MANIFEST, manifest)
    return out_dir


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _space_from_metadata(meta: dict[str, Any], weights: Path) -> dict[str, Any]:
    space = meta.get("space")
    if not isinstance(space, dict) or not space.get("space_id"):
        raise ModelDirError(
            f"{weights}: no target space in its metadata; refit it with `aegis-lab align`"
        )
    return dict(space)


def aligned_student_dir(progress: bool = True, weights: Path | None = None) -> Path:
    """The default query model: student + committed Dense map, assembled once into the cache.

    No model runs here, only file links and small writes, so the stack can call it at start.
    The cache is keyed on the weights' sha256 and on where the student package lives (the
    directory links into it, so a moved or reinstalled package must trigger a rebuild).
    """
    weights = Path(weights or ALIGNED_WEIGHTS)
    if not weights.is_file():
        raise RuntimeError(f"{weights} is missing; reproduce it with `aegis-lab align`")
    base = student_base_dir()
    target = cache_dir() / "models" / ALIGNED_CACHE_NAME
    base_weights = base / "model.safetensors"
    canaries = weights.parent / CANARIES_FILE  # recorded with the map (`aegis-lab canaries`)
    fingerprint = json.dumps(
        {
            "dense_sha256": file_sha256(weights),
            "canaries_sha256": file_sha256(canaries) if canaries.is_file() else "",
            "base": str(base.resolve()),
            "base_weights_bytes": base_weights.stat().st_size if base_weights.exists() else 0,
        },
        sort_keys=True,
        indent=1,
    )

    def build(tmp: Path) -> Path:
        _, _, meta = read_dense_weights(weights)
        if progress:
            print(f"assembling {ALIGNED_CACHE_NAME} into {target}", file=sys.stderr)
        out = write_aligned_student(
            base,
            weights,
            tmp / "model",
            _space_from_metadata(meta, weights),
            prompts=meta.get("prompts") or {},
        )
        if canaries.is_file():
            shutil.copyfile(canaries, out / CANARIES_FILE)
        return out

    return cached_build(target, fingerprint, build, ALIGNED_CACHE_NAME)
