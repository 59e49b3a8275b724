"""Run the chosen scenarios on one fleet, restoring it between them, and report."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from aegis_lab.chaos.fleet import Fleet, FleetConfig
from aegis_lab.chaos.oracle import ReferenceModel
from aegis_lab.chaos.report import write_report
from aegis_lab.chaos.scenarios import LONG, SCENARIOS, SHORT, SOAK_SECONDS, Context, Outcome


def run_scenarios(names: list[str], ctx: Context, on_outcome: Any = None) -> list[Outcome]:
    """Each scenario starts from a whole, healthy fleet (killed replicas restarted)."""
    outcomes = []
    for name in names:
        ctx.fleet.restore()
        outcome = asyncio.run(SCENARIOS[name](ctx))
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(name, outcome)
    return outcomes


def main_args(ns: Any) -> int:
    from aegis_serve.models.resolve import resolve_model

    names = ns.scenario or (["soak"] if ns.soak else list(SCENARIOS))
    if "fuzz" in names and importlib.util.find_spec("hypothesis") is None:
        raise SystemExit("the fuzz scenario needs hypothesis: pip install -e '.[test]'")
    size = LONG if ns.long or ns.soak else SHORT
    if ns.soak:
        size = dataclasses.replace(size, soak_seconds=SOAK_SECONDS)
    command = "aegis-lab " + " ".join(sys.argv[1:])
    model_dir = resolve_model(ns.model)
    reference = ReferenceModel(model_dir)
    cfg = FleetConfig(model_dir, threads=ns.threads, max_queue_texts=ns.max_queue_texts)

    def show(name: str, o: Outcome) -> None:
        row = o.row(f"{command} (scenario {name})")
        brief = {k: row[k] for k in ("test", "requests", "succeeded", "rejected", "failed",
                                     "wrong_or_lost", "max_rss_mb", "passed")}  # fmt: skip
        print(json.dumps(brief), flush=True)
        for check, ok in o.checks.items():
            if not ok:
                print(f"  FAILED check: {check}; details: {json.dumps(o.details)}", flush=True)

    with Fleet(cfg) as fleet:
        ctx = Context(fleet, reference, size, progress=not ns.no_progress, seed=ns.seed)
        outcomes = run_scenarios(names, ctx, show)
    if ns.report:
        rows = [o.row(command) for o in outcomes]
        # A run of some scenarios replaces their rows and keeps the others' (each row names
        # the command that produced it).
        partial = set(names) != set(SCENARIOS)
        write_report(rows, command, Path(ns.out_md), Path(ns.out_json), merge=partial)
        print(f"wrote {ns.out_md} and {ns.out_json}")
    return 0 if all(o.passed for o in outcomes) else 1
