"""Model specs on the command line: a directory path, or a built-in default.

`builtin:document` is the teacher (all-mpnet-base-v2, extracted from its packages once).
The query students, both aligned into the teacher's space:

- `builtin:query-linear`: MiniLM plus the least-squares Dense map (``models/student.py``),
  assembled once in the cache;
- `builtin:query-exit2`: the teacher's first 2 layers, LEAF-distilled on WordNet text, a
  committed directory (``assets/distilled-student``, fp16 weights; completed once from the
  teacher, which holds the tensors it was committed without);
- `builtin:query-leaf`: the linear student trained further on the query corpus with the
  cross-space score term over student-mined teacher rows (``assets/leaf-student``, fp16
  weights; completed once from `builtin:query-linear`, which holds its frozen token table).

`builtin:query` names whichever is the default (``DEFAULT_QUERY``): the evaluation suite's
winner on its dev split (docs/alignment.md). The exit-2 student wins on WordNet usage →
definition retrieval alone but keeps only 44 % of the teacher on real questions.

The space's int8 calibration ranges (``assets/space-calibration/calibration.json``, per-dim
min/max of teacher vectors of the distillation corpus) reach the teacher through a cached
directory of links, so the document pool, whose ranges the gateway prefers, serves them.
Encoders only ever see paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from aegis_serve.models.canaries import CANARIES_FILE

# The default query student: the evaluation suite's winner on its dev split, at full width,
# 256 dims and binary alike (docs/alignment.md), not one chosen on WordNet alone.
DEFAULT_QUERY = "builtin:query-leaf"
BUILTINS = (
    "builtin:query",
    "builtin:document",
    "builtin:query-linear",
    "builtin:query-exit2",
    "builtin:query-leaf",
)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DISTILLED_DIR = ASSETS / "distilled-student"
LEAF_DIR = ASSETS / "leaf-student"
SPACE_CALIBRATION = ASSETS / "space-calibration" / "calibration.json"
_CALIBRATION = "calibration.json"


def committed_student_dir(asset: Path, progress: bool = True) -> Path | None:
    """The committed student directory ``asset``, if this checkout has it complete.

    A student committed without the tensors it shares with another model
    (``shared_weights.json``, see ``models/shared_weights.py``) is completed once from that
    model into the cache.
    """
    needed = ("modules.json", "model.safetensors", "config.json", "aegis_space.json")
    if not all((asset / name).is_file() for name in needed):
        return None
    from aegis_serve.models.shared_weights import read_manifest

    manifest = read_manifest(asset)
    return asset if manifest is None else _completed_student(asset, manifest, progress)


def _completed_student(asset: Path, manifest: dict[str, object], progress: bool) -> Path:
    """The committed student plus its shared tensors from their source, built once."""
    from aegis_serve.cache import cache_dir, cached_build
    from aegis_serve.models.shared_weights import restore_shared

    source = resolve_model(str(manifest["source"]), progress=progress)
    digest = hashlib.sha256()
    for f in sorted(asset.rglob("*")):
        if f.is_file():
            digest.update(f"{f.relative_to(asset)}\n".encode() + f.read_bytes())
    fingerprint = json.dumps(
        {"student": digest.hexdigest(), "source": str(source.resolve())}, sort_keys=True
    )
    target = cache_dir() / "models" / "distilled" / asset.name

    def build(tmp: Path) -> Path:
        return restore_shared(asset, source, tmp / asset.name)

    return cached_build(target, fingerprint, build, f"completing {asset.name}")


def _space_calibration(teacher: Path) -> Path | None:
    """The committed calibration file when it was computed in ``teacher``'s space."""
    if not SPACE_CALIBRATION.is_file():
        return None
    space = json.loads(SPACE_CALIBRATION.read_text()).get("space_id", "")
    return SPACE_CALIBRATION if space.startswith(f"{teacher.resolve().name}/") else None


def calibrated_teacher_dir(teacher: Path, calibration: Path) -> Path:
    """``teacher`` plus ``calibration``: links to its files in a cached directory.

    The space id must not change, so a teacher without a manifest gets one that pins the
    model id it had under its own directory name.
    """
    from aegis_serve.cache import cache_dir, cached_build
    from aegis_serve.models.st_dir import SPACE_MANIFEST, _dir_name

    target = cache_dir() / "models" / "calibrated" / teacher.resolve().name
    canaries = calibration.parent / CANARIES_FILE  # the space's reference canaries
    fingerprint = json.dumps(
        {
            "teacher": str(teacher.resolve()),
            "calibration_sha256": hashlib.sha256(calibration.read_bytes()).hexdigest(),
            "canaries_sha256": hashlib.sha256(canaries.read_bytes()).hexdigest()
            if canaries.is_file()
            else "",
        },
        sort_keys=True,
    )

    def build(tmp: Path) -> Path:
        root = tmp / teacher.resolve().name
        root.mkdir()
        for entry in teacher.iterdir():
            if entry.name.startswith(".") or entry.name in (_CALIBRATION, CANARIES_FILE):
                continue
            os.symlink(entry.resolve(), root / entry.name)
        shutil.copyfile(calibration, root / _CALIBRATION)
        if canaries.is_file():
            shutil.copyfile(canaries, root / CANARIES_FILE)
        if not (teacher / SPACE_MANIFEST).is_file():
            manifest = {"model_id": _dir_name(teacher)}
            (root / SPACE_MANIFEST).write_text(json.dumps(manifest) + "\n", encoding="utf-8")
        return root

    return cached_build(target, fingerprint, build, f"calibrated {teacher.name}")


def resolve_model(spec: str, progress: bool = True) -> Path:
    """Turn a model spec into a directory, building cached defaults on first use."""
    if spec == "builtin:document":
        from aegis_serve.models.registry_weights import teacher_dir

        teacher = teacher_dir(progress=progress)
        calibration = _space_calibration(teacher)
        return calibrated_teacher_dir(teacher, calibration) if calibration else teacher
    if spec == "builtin:query":
        return resolve_model(DEFAULT_QUERY, progress)
    if spec in ("builtin:query-exit2", "builtin:query-leaf"):
        asset = DISTILLED_DIR if spec == "builtin:query-exit2" else LEAF_DIR
        committed = committed_student_dir(asset, progress)
        if committed is None:
            raise ValueError(f"{spec}: this checkout has no complete {asset}")
        return committed
    if spec == "builtin:query-linear":
        from aegis_serve.models.student import aligned_student_dir

        return aligned_student_dir(progress=progress)
    if spec.startswith("builtin:"):
        raise ValueError(f"unknown built-in model {spec!r}; choose one of {BUILTINS}")
    path = Path(spec).expanduser()
    if not (path / "modules.json").exists():
        raise ValueError(f"{path} is not a Sentence-Transformers model directory (no modules.json)")
    return path
