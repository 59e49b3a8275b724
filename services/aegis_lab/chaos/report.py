"""docs/reliability.md and docs/results/reliability.json from the scenarios' outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegis_lab.bench.report import machine_description, markdown_table, today, write_json
from aegis_lab.chaos.oracle import MIN_COSINE

COLUMNS = [
    ("test", "scenario"),
    ("requests", "requests"),
    ("succeeded", "succeeded"),
    ("rejected", "rejected (defined status)"),
    ("failed", "failed"),
    ("wrong_or_lost", "wrong_or_lost"),
    ("max_rss_mb", "max RSS MB"),
    ("verdict", "checks"),
]


def payload(rows: list[dict[str, Any]], command: str) -> dict[str, Any]:
    return {"machine": machine_description(), "date": today(), "command": command, "rows": rows}


def render(data: dict[str, Any], figure: str = "") -> str:
    """The Markdown page: one table (and its plot), then each scenario's checks and details."""
    table_rows = [{**r, "verdict": _verdict(r)} for r in data["rows"]]
    lines = [
        "# Reliability",
        "",
        "Written by `aegis-lab chaos --long --report`: real processes on 127.0.0.1 (one query",
        "encoder, two document encoders, two gateways — the second only for the gateway",
        "restart, where the client balances over both; both pools serve `builtin:query`, the",
        "document pool with `--role document`), real gRPC, the real Python client (one attempt",
        "per request, except in the gateway restart, which tests the client's retries). Every",
        "request carries texts no other request carries, and every returned vector is compared",
        "with a reference computed in-process from the same model directory: a row is right",
        f"when its cosine with its own text's reference is >= {MIN_COSINE} (not bit-exact:",
        "batching changes float rounding). `wrong_or_lost` counts rows that are not right or",
        "missing; it must be 0. `rejected` counts answers with a defined status",
        "(RESOURCE_EXHAUSTED under overload; INVALID_ARGUMENT etc. in the fuzz campaign);",
        "`failed` counts anything else (UNAVAILABLE, UNKNOWN, INTERNAL, deadline). Max RSS is",
        "the largest resident set of any fleet process sampled from /proc during the scenario",
        "(VmHWM included for overload). A hung replica (SIGSTOP: alive, connections open,",
        "answering nothing) leaves rotation at its first failed health probe and, at its",
        "second, the calls it holds are ended and retried on the other replicas (Encode is",
        "idempotent); after SIGCONT it passes its probe and canary check and is back.",
        "",
        (
            f"- command: `{data['command']}`"
            if len({r["command"] for r in data["rows"]}) <= 1
            else f"- commands: per scenario, below (the last run: `{data['command']}`)"
        ),
        f"- machine: {data['machine']}",
        f"- date: {data['date']}",
        "",
        markdown_table(table_rows, COLUMNS),
        "",
        *([f"![outcome of every request per scenario]({figure})", ""] if figure else []),
    ]
    for r in data["rows"]:
        lines += [f"## {r['test']}", "", f"- command: `{r['command']}`"]
        if r.get("skipped"):
            lines += [f"- skipped on this machine: {r['skipped']}"]
        lines += [f"- {'ok' if ok else 'FAILED'}: {name}" for name, ok in r["checks"].items()]
        lines += ["", "```json", json.dumps(r["details"], indent=1, ensure_ascii=True), "```", ""]
    return "\n".join(lines)


def _verdict(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return "skipped (see below)"
    return "pass" if row["passed"] else "**FAIL**"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per scenario: the share of requests that succeeded, were rejected with a defined
    status, failed, or came back wrong/lost (the last two must be empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["test"] for r in rows]
    parts = [("succeeded", "#4c9a2a"), ("rejected", "#e0a030"), ("failed", "#c0392b"),
             ("wrong_or_lost", "#000000")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    left = [0.0] * len(rows)
    for key, color in parts:
        share = [r[key] / r["requests"] if r["requests"] else 0.0 for r in rows]
        ax.barh(names, share, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, share, strict=True)]
    for i, r in enumerate(rows):
        label = "skipped" if r.get("skipped") else f"{r['requests']:,} requests"
        ax.text(1.01, i, label, va="center", fontsize=8)
    ax.set_xlim(0, 1.3)
    ax.invert_yaxis()
    ax.set_xlabel("share of requests")
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.1 - 1.2 / (len(rows) + 3)),
              ncol=4, fontsize=8, frameon=False)  # fmt: skip
    ax.set_title("Fault suite: every request answered right or with a defined status")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    rows: list[dict[str, Any]], command: str, md: Path, js: Path, *, merge: bool = False
) -> None:
    """Write both files; with `merge`, rows of other scenarios already in `js` stay."""
    if merge and js.exists():
        new = {r["test"] for r in rows}
        rows = [r for r in json.loads(js.read_text())["rows"] if r["test"] not in new] + rows
    data = payload(rows, command)
    write_json(js, data)
    md.parent.mkdir(parents=True, exist_ok=True)
    plot(data["rows"], md.with_suffix(".png"))
    md.write_text(render(data, md.with_suffix(".png").name))
