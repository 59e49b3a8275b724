"""docs/benchmarks.md is shared by several benches: each rewrites only its own section."""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

HEADER = (
    "# Benchmarks\n\n"
    "Each section is written by an `aegis-lab bench …` command; the command, machine and date\n"
    "are recorded with the numbers. Compare numbers within one section (one run, one machine):\n"
    "ratios are meaningful, absolute numbers on shared machines less so.\n"
)


def machine_description() -> str:
    import os

    desc = f"{platform.node() or 'host'}: {platform.machine()}, {os.cpu_count()} CPUs"
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            desc += (
                f", {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
            )
        else:
            desc += f", no GPU, torch {torch.__version__}"
    except Exception:  # pragma: no cover
        pass
    return desc


def today() -> str:
    return time.strftime("%Y-%m-%d")


def write_section(md_path: Path, name: str, body: str) -> None:
    """Replace (or append) the section between this bench's markers."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    text = md_path.read_text() if md_path.exists() else HEADER
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    md_path.write_text(text)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _cell(value: Any) -> str:
    """Floats keep about three significant digits: 2,712.1 / 6.29 / 0.4879 (scores, ratios)."""
    if not isinstance(value, float):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for row in rows:
        cells = [_cell(row.get(key, "")) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
