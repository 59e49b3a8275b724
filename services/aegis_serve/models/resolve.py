"""Model specs on the command line: a directory path, or a built-in default.

`builtin:document` is the teacher (all-mpnet-base-v2, extracted from its packages once);
`builtin:query` is the small student aligned into the teacher's space (assembled once
from the student package and the committed alignment weights). Both end up as plain
Sentence-Transformers directories in the cache, so encoders only ever see paths.
"""

from __future__ import annotations

from pathlib import Path

BUILTINS = ("builtin:query", "builtin:document")


def resolve_model(spec: str, progress: bool = True) -> Path:
    """Turn a model spec into a directory, building cached defaults on first use."""
    if spec == "builtin:document":
        from aegis_serve.models.packaged import teacher_dir

        return teacher_dir(progress=progress)
    if spec == "builtin:query":
        from aegis_serve.models.align import aligned_student_dir

        return aligned_student_dir(progress=progress)
    if spec.startswith("builtin:"):
        raise ValueError(f"unknown built-in model {spec!r}; choose one of {BUILTINS}")
    path = Path(spec).expanduser()
    if not (path / "modules.json").exists():
        raise ValueError(f"{path} is not a Sentence-Transformers model directory (no modules.json)")
    return path
