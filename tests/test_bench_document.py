"""`aegis-lab bench document` runs end to end (tiny model, CPU) and writes its report."""

from __future__ import annotations

import json

from aegis_lab.bench.document import DocumentBenchConfig, run_document_bench
from aegis_lab.bench.driver import run_load


def test_document_bench_writes_json_markdown_and_plot(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = DocumentBenchConfig(
        model="aegis:tiny", device="cpu", docs=16, max_tokens=256, docs_per_request=4,
        concurrency=[2], long_inputs=[512], layers=[6, 3], max_seconds=20,
        out_dir=tmp_path / "docs", command="test", progress=False,
    )  # fmt: skip
    payload = run_document_bench(cfg)
    data = json.loads((tmp_path / "docs/results/document_pool.json").read_text())
    assert data == json.loads(json.dumps(payload))
    assert {"device", "date", "command", "rows"} <= set(data)
    keys = {"path", "layers", "corpus", "concurrency", "docs_per_s", "tokens_per_s", "p50_ms",
            "p99_ms"}  # fmt: skip
    rows = [r for r in data["rows"] if "error" not in r]
    assert all(keys <= set(r) for r in rows)
    gateway = [r for r in rows if r["path"] == "gateway" and r["corpus"] == "mixed"]
    assert {r["layers"] for r in gateway} == {6, 3} and all(r["errors"] == 0 for r in gateway)
    assert all(r["docs_per_s"] > 0 for r in rows)
    assert {r["path"] for r in rows} == {"gateway", "raw_hf"}
    md = (tmp_path / "docs/benchmarks.md").read_text()
    assert "<!-- section:document_pool -->" in md and "gateway vs raw HF" in md
    assert (tmp_path / "docs/results/document_pool.png").stat().st_size > 10_000


def test_load_driver_counts_every_unit_under_concurrency():
    import asyncio

    async def call(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return 5

    result = asyncio.run(run_load(call, 40, 8, progress=False))
    assert result.units == 200 and len(result.latencies) == 40 and result.errors == 0
