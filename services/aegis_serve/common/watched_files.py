"""Files a running server re-reads when they are replaced (TLS certificates, CA bundles).

cert-manager and Kubernetes Secret volumes swap files atomically; a `WatchedFiles` notices by
their (inode, mtime, size) and loads them again, so rotating a certificate needs no restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WatchedFiles(Generic[T]):
    """`paths` and what `load` makes of them: `poll()` answers a fresh value once a file was
    replaced, else None. A file caught missing or half-written (`load` raising OSError or
    ValueError) keeps the previous value until a later poll."""

    def __init__(self, paths: Sequence[Path | None], load: Callable[[], T], what: str) -> None:
        self.paths = [p for p in paths if p is not None]
        self.load = load
        self.what = what
        self._seen = self._signature()
        self.initial = load()
        self.reloads = 0

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        stats = [p.stat() for p in self.paths]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def poll(self) -> T | None:
        try:
            seen = self._signature()
            if seen == self._seen:
                return None
            value = self.load()
        except (OSError, ValueError) as exc:
            log.warning("%s changed but cannot be read yet (%s); keeping the old one",
                        self.what, exc)  # fmt: skip
            return None
        self._seen = seen
        self.reloads += 1
        log.info("%s reloaded from %s (reload %d)", self.what, self.paths[0], self.reloads)
        return value
