"""`aegis-lab bench telemetry` end to end at a tiny size: both stacks run, the `on` stack
really exports spans and metric points, and the report files are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aegis_lab.bench.telemetry import TelemetryBenchConfig, paired_ratio_ci, run_telemetry_bench


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
    on = rows["on, 100% sampled"]
    low, high = on["throughput_change_ci95_pct"]
    assert low <= on["throughput_change_pct"] <= high
    md = (tmp_path / "benchmarks.md").read_text()
    assert "Observability overhead" in md and "paired ratios" in md


def test_throughput_is_compared_round_by_round() -> None:
    """A machine whose speed swings between rounds moves both stacks of a round alike: the
    paired ratio sees the steady 10% loss exactly, whatever the swing."""
    off = np.array([500.0, 300.0, 480.0, 310.0, 490.0])
    mid, low, high = paired_ratio_ci(off * 0.9, off)
    assert mid == pytest.approx(0.9) and low == pytest.approx(0.9) and high == pytest.approx(0.9)
    mid, low, high = paired_ratio_ci(np.array([2.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert mid == 2.0 and 1.0 <= low <= mid <= high <= 3.0
