"""One home for everything aegis-serve builds once and reuses: the cache directory.

Extracted teacher weights, assembled students, ONNX exports (and, in the lab, teacher
embeddings and data sets) live under ``cache_dir()`` (``$AEGIS_CACHE_DIR``, default
``~/.cache/aegis-serve``). ``cached_build`` makes a directory exactly once across processes:
it is built in a temporary directory beside the target and published by an atomic rename,
under an exclusive ``flock`` (so concurrent processes build it once), with a ``.complete``
marker written last that records what it was built from; a directory without a matching
marker is half-written or outdated and is built again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MARKER_NAME", "cache_dir", "cached_build", "exclusive_lock", "marker_ok"]

log = logging.getLogger(__name__)

MARKER_NAME = ".complete"


def cache_dir() -> Path:
    """Root of everything we unpack; overridable so tests and deployments can isolate it."""
    env = os.environ.get("AEGIS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aegis-serve"


def marker_ok(target: Path, fingerprint: str) -> bool:
    marker = target / MARKER_NAME
    try:
        return marker.read_text(encoding="utf-8") == fingerprint
    except OSError:
        return False


@contextmanager
def exclusive_lock(lock_path: Path, label: str) -> Iterator[None]:
    """Hold ``flock`` on ``lock_path``; the lock dies with the process, so no stale locks."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process preparing %s (lock %s)", label, lock_path)
            print(f"waiting for another process preparing {label} ...", file=sys.stderr)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def cached_build(target: Path, fingerprint: str, build: Callable[[Path], Path], label: str) -> Path:
    """Make ``target`` exactly once across processes and survive interruption.

    ``build(tmp)`` fills a fresh temp dir beside ``target`` and returns the directory inside
    it that should become ``target``. The marker is written into that directory last and the
    directory is then renamed into place, so readers see either nothing or a complete tree.
    """
    if marker_ok(target, fingerprint):
        return target
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(parent / f".{target.name}.lock", label):
        if marker_ok(target, fingerprint):  # another process finished while we waited
            return target
        # Leftovers of interrupted runs; safe to delete because we hold the lock.
        for stale in parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        try:
            root = build(tmp)
            marker_tmp = root / f"{MARKER_NAME}.part"
            with open(marker_tmp, "w", encoding="utf-8") as fh:
                fh.write(fingerprint)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(marker_tmp, root / MARKER_NAME)
            if target.exists() or target.is_symlink():
                # Half-written or outdated: move it aside (a dir cannot replace a non-empty one).
                old = tmp / ".old"
                os.replace(target, old)
            os.replace(root, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
