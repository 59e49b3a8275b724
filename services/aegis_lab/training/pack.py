"""Pack a distilled student for commit: leave out the tensors it shares with its teacher.

``aegis-lab pack-student`` writes the student without the tensors that are bit-identical to
the teacher's (the frozen token table of a layer-exit student: 47 MB) and a
``shared_weights.json`` naming them with a SHA-256 of their bytes; the serving side completes
it (``aegis_serve.models.shared_weights.restore_shared``) and refuses a teacher that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from aegis_serve.models.shared_weights import (
    SHARED_FILE,
    WEIGHTS,
    SharedWeightsError,
    source_tensors,
    tensor_sha256,
)
from aegis_serve.models.st_dir import copy_tree


def strip_shared(model_dir: Path, source_dir: Path, source_spec: str, out: Path) -> dict[str, Any]:
    """Write ``model_dir`` to ``out`` without the tensors equal to ``source_dir``'s.

    A tensor counts as shared when the source has one of the same name and shape whose values,
    cast to the student's dtype, are bit-identical. Returns the manifest it writes.
    """
    weights = load_file(str(model_dir / WEIGHTS))
    source = source_tensors(source_dir, set(weights))
    shared: dict[str, dict[str, Any]] = {}
    for name, t in weights.items():
        src = source.get(name)
        if src is not None and src.shape == t.shape and torch.equal(src.to(t.dtype), t):
            shared[name] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            shared[name]["sha256"] = tensor_sha256(t)
    if not shared:
        raise SharedWeightsError(f"{model_dir} shares no tensor with {source_dir}")
    # (the resumable training state is not part of the model: hundreds of MB of optimizer)
    copy_tree(model_dir, out, skip=frozenset({WEIGHTS, SHARED_FILE, "checkpoint.pt"}))
    save_file({k: v for k, v in weights.items() if k not in shared}, str(out / WEIGHTS))
    manifest = {"source": source_spec, "tensors": shared}
    (out / SHARED_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
