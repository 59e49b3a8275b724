"""Rebuild a model directory that was committed without the tensors it shares with another.

The layer-exit query student (docs/alignment.md) is the teacher's first layers, distilled with
the token embedding table frozen. That table is 47 MB in fp16, the same bytes the teacher
already ships in its packages; committing it again would push the student past what belongs in
git. ``aegis-lab pack-student`` writes the student without the tensors it shares with the
teacher, plus ``shared_weights.json`` naming them with a SHA-256 of their bytes (the format
below); ``restore_shared`` puts them
back from the teacher (cast to the student's dtype) into a complete directory that the encoder
loads unchanged, and refuses a source whose bytes differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aegis_serve.models.st_dir import copy_tree

SHARED_FILE = "shared_weights.json"
WEIGHTS = "model.safetensors"


class SharedWeightsError(ValueError):
    """The source model does not hold the tensors the stripped directory needs."""


def tensor_sha256(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's raw bytes (any dtype, bf16 included)."""
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def source_tensors(source_dir: Path, names: set[str]) -> dict[str, torch.Tensor]:
    """The named tensors of ``source_dir``'s weight files (only those, read lazily)."""
    found: dict[str, torch.Tensor] = {}
    for f in sorted(source_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                if key in names and key not in found:
                    found[key] = fh.get_tensor(key)
    return found


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """``shared_weights.json`` of a stripped directory, or None for a complete one."""
    path = model_dir / SHARED_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def restore_shared(stripped_dir: Path, source_dir: Path, out: Path) -> Path:
    """Complete ``stripped_dir`` into ``out`` with the shared tensors taken from ``source_dir``."""
    manifest = read_manifest(stripped_dir)
    if manifest is None:
        raise SharedWeightsError(f"{stripped_dir} has no {SHARED_FILE}")
    wanted: dict[str, dict[str, Any]] = manifest["tensors"]
    source = source_tensors(source_dir, set(wanted))
    weights = load_file(str(stripped_dir / WEIGHTS))
    for name, spec in wanted.items():
        if name not in source:
            raise SharedWeightsError(f"{source_dir} has no tensor {name!r}")
        t = source[name].to(getattr(torch, spec["dtype"])).contiguous()
        if list(t.shape) != spec["shape"] or tensor_sha256(t) != spec["sha256"]:
            raise SharedWeightsError(
                f"{source_dir}: tensor {name!r} differs from the one {stripped_dir} was "
                "distilled with (another teacher version?)"
            )
        weights[name] = t
    copy_tree(stripped_dir, out, skip=frozenset({WEIGHTS, SHARED_FILE}))
    save_file(weights, str(out / WEIGHTS))
    return out
