"""Generate the Python gRPC stubs from protos/ into clients/python/.

One script produces every committed stub; `--check` regenerates into a temporary
directory and fails when the committed files differ (CI runs it so stubs never drift).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "clients" / "python"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every proto; return the generated files relative to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(
        p.relative_to(out_dir) for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    )
    # Package markers so setuptools and type checkers see regular packages.
    for rel in generated:
        pkg = (out_dir / rel).parent
        while pkg != out_dir:
            (pkg / "__init__.py").touch()
            pkg = pkg.parent
    return generated


def committed_files() -> list[Path]:
    base = OUT_ROOT / "aegis"
    return sorted(
        p.relative_to(OUT_ROOT) for p in base.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    )


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        problems = []
        if fresh != committed_files():
            problems.append(f"file set differs: fresh={fresh} committed={committed_files()}")
        for rel in fresh:
            committed = OUT_ROOT / rel
            if not committed.exists() or not filecmp.cmp(Path(tmp) / rel, committed, shallow=False):
                problems.append(f"stale: {rel}")
    if problems:
        print("generated stubs drift from protos/ (run `python scripts/gen_protos.py`):")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"stubs up to date ({len(fresh)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()
    if args.check:
        return check()
    for rel in generate(OUT_ROOT):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
