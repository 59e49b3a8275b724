"""Write the suite's alignment report and the student frontier, from one result dict.

Files: ``docs/alignment.md`` (targets, the frontier table and plot, per-task tables, the default
student's rows at every dim and encoding), ``docs/results/alignment.json`` (the default
student's rows in the report's row schema with a ``task`` key, ``"macro"`` rows beside the
per-task ones), ``docs/results/student_frontier.json`` and ``student_frontier.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegis_lab.evaluation.report import TARGETS
from aegis_lab.evaluation.suite_eval import frontier_rows, ratio, student_rows

__all__ = ["check_suite_targets", "write_suite_report"]


def _ndcg(rows: list[dict[str, Any]], task: str, qm: str, dm: str, dim: int, enc: str) -> float:
    for r in rows:
        if (r["task"], r["query_model"], r["document_model"], r["dimensions"], r["encoding"]) == (
            task, qm, dm, dim, enc,
        ):  # fmt: skip
            return float(r["ndcg_at_10"])
    raise KeyError((task, qm, dm, dim, enc))


def check_suite_targets(result: dict[str, Any], student: str) -> list[dict[str, Any]]:
    """The issue's targets on the macro average, same-setting ratios."""
    rows, full = result["rows"], result["dims"][0]
    out = []
    for label, dims, enc, need in TARGETS:
        d = full if dims == "full" else int(dims)
        r = ratio(rows, student, d, enc)
        out.append(
            {
                "target": label,
                "needed": need,
                "ratio_same_setting": r,
                "met": r >= need,
                "student_teacher_ndcg": _ndcg(rows, "macro", student, "teacher", d, enc),
            }
        )
    st = _ndcg(rows, "macro", student, "teacher", full, "float32")
    ss = _ndcg(rows, "macro", student, student, full, "float32")
    out.append(
        {
            "target": "student→teacher above student→student (macro, full dim, float32)",
            "needed": ss,
            "student_teacher_ndcg": st,
            "met": st > ss,
        }
    )
    p50, teacher_p50 = _p50(result, student), result["teacher"]["p50_ms"]
    out.append(
        {
            "target": "single-query p50 ≤ 1/3 of the teacher's (same backend, cores)",
            "needed": teacher_p50 / 3,
            "p50_ms": p50,
            "met": p50 <= teacher_p50 / 3,
        }
    )
    return out  # fmt: skip


def _p50(result: dict[str, Any], name: str) -> float:
    return next(c["p50_ms"] for c in result["candidates"] if c["name"] == name)


def _plot_frontier(frontier: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, style, label in (
        ("ndcg_ratio_full", "o", "full dim float32"),
        ("ndcg_ratio_256", "s", "256 dims float32"),
        ("ndcg_ratio_int8", "^", "full dim int8"),
        ("ndcg_ratio_binary", "x", "full dim binary"),
    ):
        ax.scatter([f["p50_ms"] for f in frontier], [f[key] for f in frontier], marker=style,
                   label=label)  # fmt: skip
    for f in frontier:
        ax.annotate(f["student"], (f["p50_ms"], f["ndcg_ratio_full"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.axhline(0.97, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("single-query p50 (ms, ONNX Runtime, same cores)")
    ax.set_ylabel("macro nDCG@10: student→teacher / teacher→teacher")
    ax.set_title("Query student frontier on the evaluation suite")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def write_suite_report(
    result: dict[str, Any],
    student: str,
    command: str,
    md_path: Path,
    json_path: Path,
    frontier_path: Path,
    notes: str = "",
) -> dict[str, Any]:
    """Write every file; returns ``{"targets": …, "frontier": …}``."""
    for path in (md_path, json_path, frontier_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    rows, full = result["rows"], result["dims"][0]
    frontier = frontier_rows(result)
    targets = check_suite_targets(result, student)
    default_info = next(c for c in result["candidates"] if c["name"] == student)
    payload = {
        "command": command,
        "split": result["split"],
        "size": result["size"],
        "tasks": result["tasks"],
        "models": {"teacher": result["teacher"], "student": default_info},
        "calibration": result["calibration"],
        "rows": student_rows(result, student),
        "targets": targets,
    }
    json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    frontier_path.write_text(
        json.dumps({"command": command, "split": result["split"], "rows": frontier}, indent=1)
        + "\n",
        encoding="utf-8",
    )
    png = frontier_path.with_suffix(".png")
    _plot_frontier(frontier, png)
    png_rel = Path("results") / png.name
    task_names = [t["name"] for t in result["tasks"]]
    lines = [
        "# Query student ↔ document teacher alignment (evaluation suite)",
        "",
        "Generated by:",
        "",
        f"```\n{command}\n```",
        "",
        f"- Split: **{result['split']}** ({result['size']}); the dev split is the only one any "
        "training or selection looked at.",
        f"- Teacher (document model): `{result['teacher']['model_id']}` "
        f"({result['teacher']['space_id']}). Default query student: **{student}** "
        f"(`{default_info['model_id']}`).",
        f"- Vectors from `{result['backend']}`; int8 with the space's calibration ranges (from "
        f"`{result['calibration']['source'] or 'none: fixed -1..+1'}`), binary as sign bits "
        "(Hamming ranking).",
        "- Ratios: macro(student→teacher) / macro(teacher→teacher) nDCG@10 at the same dims and "
        "encoding; teacher agreement@10: share of the teacher's own top 10 at that setting the "
        "student also ranks in its top 10.",
        f"- Machine-readable: `{json_path.as_posix()}` (the default student), "
        f"`{frontier_path.as_posix()}` (every student).",
        "",
        "## Tasks",
        "",
        "| task | queries | documents | query kind | source | notes |",
        "|---|---|---|---|---|---|",
    ]
    for t in result["tasks"]:
        lines.append(f"| {t['name']} | {t['queries']} | {t['documents']} | {t['query_kind']} | "
                     f"{t['source']} | {t['notes']} |")  # fmt: skip
    lines += [
        "",
        f"## Targets (default student: {student})",
        "",
        "| target | needed | measured | met |",
        "|---|---|---|---|",
    ]
    for t in targets:
        if "ratio_same_setting" in t:
            got = f"{t['ratio_same_setting']:.1%} (nDCG {t['student_teacher_ndcg']:.3f})"
            need = f"≥ {t['needed']:.0%}"
        elif "p50_ms" in t:
            got, need = f"{t['p50_ms']:.2f} ms", f"≤ {t['needed']:.2f} ms"
        else:
            got, need = f"{t['student_teacher_ndcg']:.3f}", f"> {t['needed']:.3f}"
        lines.append(f"| {t['target']} | {need} | {got} | {'yes' if t['met'] else '**no**'} |")
    lines += [
        "",
        "## Frontier",
        "",
        "| student | layers | params | p50 ms | p50 / teacher | full | 256 | int8 | binary "
        "| macro s→t | macro s→s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in frontier:
        lines.append(
            f"| {f['student']} | {f['layers']} | {f['params'] / 1e6:.1f}M | {f['p50_ms']:.2f} | "
            f"{f['p50_vs_teacher']:.2f} | {f['ndcg_ratio_full']:.1%} | {f['ndcg_ratio_256']:.1%} "
            f"| {f['ndcg_ratio_int8']:.1%} | {f['ndcg_ratio_binary']:.1%} | "
            f"{_fmt(f['macro_ndcg_student_teacher'])} | {_fmt(f['macro_ndcg_student_student'])} |"
        )
    lines += ["", f"![frontier]({png_rel.as_posix()})", "", "## Per task (full dim, float32)", ""]
    names = [c["name"] for c in result["candidates"] if c["name"] != "teacher"]
    lines.append("| task | teacher→teacher | " + " | ".join(f"{n}→teacher" for n in names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for task in [*task_names, "macro"]:
        tt = _ndcg(rows, task, "teacher", "teacher", full, "float32")
        cells = [
            f"{_ndcg(rows, task, n, 'teacher', full, 'float32'):.3f} "
            f"({_ndcg(rows, task, n, 'teacher', full, 'float32') / tt:.0%})"
            for n in names
        ]
        lines.append(f"| {task} | {tt:.3f} | " + " | ".join(cells) + " |")  # fmt: skip
    lines += [
        "",
        f"## Default student ({student}): every dim and encoding (macro)",
        "",
        "| query → document | dims | encoding | nDCG@10 | Recall@10 | MRR@10 | agreement@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        if r["task"] != "macro":
            continue
        lines.append(
            f"| {r['query_model']} → {r['document_model']} | {r['dimensions']} | {r['encoding']} "
            f"| {r['ndcg_at_10']:.4f} | {r['recall_at_10']:.4f} | {r['mrr_at_10']:.4f} | "
            f"{r['teacher_agreement_at_10']:.4f} |"
        )
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"targets": targets, "frontier": frontier}
