"""`aegis-lab bench telemetry` end to end at a tiny size: both stacks run, the `on` stack
really exports spans and metric points, and the report files are written."""

from __future__ import annotations

import json
from pathlib import Path

from aegis_lab.bench.telemetry import TelemetryBenchConfig, run_telemetry_bench


def test_telemetry_bench_runs_both_stacks_and_writes_the_report(tmp_path: Path) -> None:
    cfg = TelemetryBenchConfig(
        backend="torch", threads=1, sampling=[1.0], rounds=2, requests=10, throughput_requests=16,
        concurrency=4, scrape_interval_s=0.5,
        out_dir=tmp_path, command="test", progress=False,
    )  # fmt: skip
    payload = run_telemetry_bench(cfg)
    rows = {r["telemetry"]: r for r in payload["rows"]}
    assert list(rows) == ["off", "on, 100% sampled"]
    assert rows["off"]["requests"] == rows["on, 100% sampled"]["requests"] == 20
    assert all(r["queries_per_s"] > 0 for r in rows.values())
    exported = payload["exported"]
    # Every sampled request leaves spans (gateway + encoder); `off` exports nothing anywhere.
    assert exported["spans"] >= 5 * (20 + 2 * 16)
    assert exported["scrapes"] > 0
    saved = json.loads((tmp_path / "results/observability_overhead.json").read_text())
    assert saved["rows"][1]["p50_overhead_pct"] == rows["on, 100% sampled"]["p50_overhead_pct"]
    assert (tmp_path / "results/observability_overhead.png").stat().st_size > 0
    assert "Observability overhead" in (tmp_path / "benchmarks.md").read_text()
