"""The two wings stay apart: `aegis_serve` serves and never imports `aegis_lab`.

Checked three ways: no import statement in the serving package names the lab; every serving
module imports (and `aegis-serve --help` runs) with the lab made unimportable, without pulling
in the lab's dependencies; and the serving wheel holds no lab file.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

SERVE = ROOT / "services" / "aegis_serve"
LAB_ONLY_DEPENDENCIES = ("aegis_lab", "matplotlib", "hypothesis", "sentence_transformers")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_serving_module_imports_the_lab() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imported_modules(path) if n.split(".")[0] in LAB_ONLY_DEPENDENCIES
        )
        for path in sorted(SERVE.rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_static_check_sees_a_lab_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from aegis_lab.bench import query\n    import matplotlib\n")
    assert {"aegis_lab.bench", "matplotlib"} <= imported_modules(bad)


BLOCK_LAB = """
import importlib, importlib.abc, pkgutil, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"serving code imported {{name}}")

sys.meta_path.insert(0, Refuse())
import aegis_serve
for module in pkgutil.walk_packages(aegis_serve.__path__, "aegis_serve."):
    importlib.import_module(module.name)
from aegis_serve.cli import build_parser
build_parser().format_help()
print("ok", len(sys.modules))
"""


def test_every_serving_module_imports_with_the_lab_unimportable() -> None:
    code = BLOCK_LAB.format(blocked=set(LAB_ONLY_DEPENDENCIES))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


@pytest.mark.timeout(600)
def test_the_serving_wheel_carries_no_lab_code(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("aegis_serve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "aegis_serve" in tops and "aegis_client" in tops and "aegis" in tops
    assert not [n for n in names if n.startswith("aegis_lab")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]  # fmt: skip
    assert not [r for r in requires if "matplotlib" in r or "hypothesis" in r], requires
