"""Debian packages as data: ``apt-get download`` + ``dpkg -x`` once into the cache.

No dataset hub is reachable here, but the distribution's package archive is. A package is
downloaded and unpacked once into ``cache_dir()/data/debian/<name>`` under the lock +
atomic-rename scheme of ``aegis_serve.cache.cached_build``; the ``.deb`` file name (hence the
version) is kept in ``<dir>/SOURCE`` so data built from it can be keyed by version. Several
missing packages are fetched with one ``apt-get download`` call.

The archive's long package descriptions (``Description-en``) are not in the ``Packages`` lists
this machine keeps (``Acquire::Languages "none"``); ``apt_translation_file`` fetches the
``Translation-en`` index with the ordinary apt client into a private lists directory of the
cache (``apt-get update -o Acquire::Languages=en -o Dir::State::Lists=...``), leaving the
system's apt state alone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from aegis_serve.cache import cache_dir, cached_build, exclusive_lock, marker_ok

__all__ = [
    "DebianPackageError",
    "apt_translation_files",
    "debian_package_dir",
    "debian_package_dirs",
    "debian_package_version",
    "debian_root",
    "file_digest",
    "read_apt_index",
]

_TIMEOUT_S = 900
# Once per process: an empty or stale apt list is refreshed a single time, not per package.
_updated = False


class DebianPackageError(RuntimeError):
    """A Debian package could not be fetched or unpacked; the message says how to fix it."""


def debian_root() -> Path:
    """``cache_dir()/data/debian``: one unpacked tree per package."""
    return cache_dir() / "data" / "debian"


def _fingerprint(name: str, keep: tuple[str, ...]) -> str:
    kept = ",".join(keep) if keep else "*"
    return f"debian package {name}: dpkg -x, kept {kept}\n"


def _fail(names: Iterable[str], detail: str) -> DebianPackageError:
    names = sorted(set(names))
    listed = " ".join(names)
    return DebianPackageError(
        f"could not obtain Debian package(s) {listed} ({detail}). This needs a Debian-based "
        f"system with apt-get, dpkg and access to its package mirror. Fix: run "
        f"`apt-get update` as root and retry (check `apt-get download {listed}` by hand), or "
        f"point AEGIS_CACHE_DIR at a cache that already holds "
        f"data/debian/{{{','.join(names)}}}"
    )


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )


def _tools(names: Iterable[str]) -> tuple[str, str]:
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg")
    if apt is None or dpkg is None:
        raise _fail(names, "apt-get/dpkg not found")
    return apt, dpkg


def _apt_update(apt: str, cwd: Path, names: Iterable[str]) -> None:
    global _updated
    if _updated:
        return
    update = _run([apt, "update"], cwd)
    if update.returncode != 0:
        raise _fail(names, f"`apt-get update` failed: {update.stderr.strip()[-500:]}")
    _updated = True


def _download(names: list[str], into: Path) -> None:
    """``apt-get download`` all ``names`` into ``into`` (one call; apt lists refreshed once)."""
    apt, _ = _tools(names)
    result = _run([apt, "download", *names], into)
    if result.returncode != 0:
        _apt_update(apt, into, names)
        result = _run([apt, "download", *names], into)
        if result.returncode != 0:
            raise _fail(names, f"`apt-get download` failed: {result.stderr.strip()[-500:]}")


def _find_deb(name: str, directory: Path) -> Path | None:
    found = sorted(directory.glob(f"{name}_*.deb"))
    return found[0] if found else None


def _prune(root: Path, keep: tuple[str, ...]) -> None:
    """Delete every file of the unpacked tree outside the ``keep`` path prefixes."""
    if not keep:
        return
    for path in sorted(root.rglob("*"), reverse=True):
        rel = path.relative_to(root).as_posix()
        inside = any(rel == k or rel.startswith(k.rstrip("/") + "/") for k in keep)
        above = any(k.startswith(rel + "/") for k in keep)
        if inside or above:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _unpacker(
    name: str, predownloaded: Path | None, keep: tuple[str, ...]
) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        _, dpkg = _tools([name])
        deb = _find_deb(name, predownloaded) if predownloaded else None
        if deb is None:
            debs = tmp / "deb"
            debs.mkdir()
            _download([name], debs)
            deb = _find_deb(name, debs)
            if deb is None:
                raise _fail([name], f"`apt-get download` left no {name}_*.deb")
        root = tmp / "root"
        unpack = _run([dpkg, "-x", str(deb), str(root)], tmp)
        if unpack.returncode != 0:
            raise _fail([name], f"`dpkg -x` failed: {unpack.stderr.strip()[-500:]}")
        _prune(root, keep)
        (root / "SOURCE").write_text(deb.name + "\n", encoding="utf-8")
        return root

    return build


def debian_package_dirs(
    names: Iterable[str], keep: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Path]:
    """Unpacked root (``dpkg -x``) of each package, fetching the missing ones in one call.

    ``keep`` maps a package to the path prefixes worth keeping (everything else of the
    unpacked tree is deleted, e.g. the 180 MB of HTML beside linux-doc's reStructuredText).
    Raises ``DebianPackageError`` naming the package and the fix when apt/dpkg fail.
    """
    names = list(dict.fromkeys(names))
    keep = keep or {}
    root = debian_root()
    fingerprints = {n: _fingerprint(n, tuple(keep.get(n, ()))) for n in names}
    missing = [n for n in names if not marker_ok(root / n, fingerprints[n])]
    predownloaded: Path | None = None
    tmp_downloads: Path | None = None
    try:
        if len(missing) > 1:
            root.mkdir(parents=True, exist_ok=True)
            tmp_downloads = Path(tempfile.mkdtemp(prefix=".downloads-", dir=root))
            try:
                _download(missing, tmp_downloads)
                predownloaded = tmp_downloads
            except DebianPackageError:
                predownloaded = None  # one by one below, so the error names the package
        out = {}
        for n in names:
            out[n] = cached_build(
                root / n,
                fingerprints[n],
                _unpacker(n, predownloaded, tuple(keep.get(n, ()))),
                f"Debian package {n}",
            )
        return out
    finally:
        if tmp_downloads is not None:
            shutil.rmtree(tmp_downloads, ignore_errors=True)


def debian_package_dir(name: str, keep: tuple[str, ...] = ()) -> Path:
    """Unpacked root of one Debian package (``<root>/usr/share/...``), cached."""
    return debian_package_dirs([name], {name: keep} if keep else None)[name]


def debian_package_version(directory: Path) -> str:
    """The version of the package unpacked in ``directory`` (from its ``.deb`` file name)."""
    source = (Path(directory) / "SOURCE").read_text(encoding="utf-8").strip()
    parts = source.removesuffix(".deb").split("_")
    return urllib.parse.unquote(parts[1]) if len(parts) >= 2 else source


# ------------------------------------------------------------------------------ apt indexes
def read_apt_index(path: Path) -> str:
    """Text of an apt list file, decompressed (``.lz4``/``.gz``/``.xz`` via apt's helper)."""
    path = Path(path)
    if path.suffix not in {".lz4", ".gz", ".xz", ".bz2", ".zst"}:
        return path.read_text(encoding="utf-8", errors="replace")
    helper = Path("/usr/lib/apt/apt-helper")
    if not helper.is_file():
        raise _fail(["apt"], f"{helper} (needed to read {path.name}) is missing")
    result = subprocess.run(
        [str(helper), "cat-file", str(path)], capture_output=True, timeout=_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise _fail(["apt"], f"apt-helper cat-file {path.name}: {result.stderr[-300:]!r}")
    return result.stdout.decode("utf-8", errors="replace")


def apt_translation_files() -> list[Path]:
    """The archive's ``Translation-en`` files (long descriptions), fetched once into the cache.

    Runs ``apt-get update`` with a private ``Dir::State::Lists`` under the cache and
    ``Acquire::Languages=en``, so the system's own lists are untouched; the fingerprint is
    files are kept until the cache is cleared; data built from them is keyed by their digest.
    """
    target = debian_root() / "apt-lists-en"
    with exclusive_lock(debian_root() / ".apt-lists-en.lock", "apt Translation-en"):
        found = sorted(target.glob("*_i18n_Translation-en*"))
        if found:
            return found
        apt, _ = _tools(["apt Translation-en"])
        (target / "partial").mkdir(parents=True, exist_ok=True)
        cmd = [
            apt,
            "update",
            "-o",
            "Acquire::Languages=en",
            "-o",
            f"Dir::State::Lists={target}",
        ]
        result = _run(cmd, target)
        found = sorted(p for p in target.glob("*_i18n_Translation-en*"))
        if result.returncode != 0 or not found:
            detail = result.stderr.strip()[-500:] or "no *_i18n_Translation-en file fetched"
            raise DebianPackageError(
                f"could not fetch the Debian Translation-en index ({detail}). Fix: run as root "
                f"on a Debian system with mirror access, or copy a cache holding {target}"
            )
        return found


def file_digest(path: Path) -> str:
    """Short SHA-256 of a file (keys built data to the exact index it came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
