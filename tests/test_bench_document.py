"""`aegis-lab bench document` runs end to end (tiny models, CPU) and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_lab.bench import peers
from aegis_lab.bench.document import Corpus, DocumentBenchConfig, run_document_bench, summarize
from aegis_lab.bench.driver import run_load

KEYS = {"path", "layers", "corpus", "concurrency", "docs_per_s", "tokens_per_s", "p50_ms",
        "p99_ms"}  # fmt: skip


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One cache for the module: the tiny random aegis-embed model is written once."""
    return tmp_path_factory.mktemp("cache")


def _rows(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    rows = [r for r in data["rows"] if "error" not in r]
    assert rows and all(set(r) >= KEYS for r in rows)
    assert all(r["docs_per_s"] > 0 for r in rows)
    return data, rows


def test_gpu_layout_on_cpu_writes_json_markdown_and_plot(tmp_path, monkeypatch, model_cache):
    """The GPU run's report (layer exit, both raw orders, st_encode), on CPU with a tiny
    aegis-embed-shaped model."""
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(model_cache))
    cfg = DocumentBenchConfig(
        model="aegis:tiny", device="cpu", cpu_mode=False, docs=16, max_tokens=256,
        docs_per_request=4, concurrency=[2], long_inputs=[512], layers=[6, 3], max_seconds=20,
        out_dir=tmp_path / "docs", command="test", progress=False,
    )  # fmt: skip
    payload = run_document_bench(cfg)
    data, rows = _rows(tmp_path / "docs/results/document_pool.json")
    assert data == json.loads(json.dumps(payload)) and data["mode"] == "gpu"
    assert {"device", "date", "command", "rows", "notes"} <= set(data)
    gateway = [r for r in rows if r["path"] == "gateway" and r["corpus"] == "mixed"]
    assert {r["layers"] for r in gateway} == {6, 3} and all(r["errors"] == 0 for r in gateway)
    assert {r["path"] for r in rows} == {"gateway", "raw_hf", "raw_hf_sorted", "st_encode"}
    assert {r["layers"] for r in rows if r["path"] == "raw_hf_sorted"} == {6, 3}
    assert [r["layers"] for r in rows if r["path"] == "raw_hf"] == [6]
    assert [r["layers"] for r in rows if r["path"] == "st_encode"] == [6]
    md = (tmp_path / "docs/benchmarks.md").read_text()
    assert "<!-- section:document_pool -->" in md and "## Document pool" in md
    for baseline in ("st_encode", "raw_hf_sorted", "raw_hf"):
        assert f"6 layers: gateway (2 in flight) vs {baseline}:" in md
    assert (tmp_path / "docs/results/document_pool.png").stat().st_size > 10_000


def test_cpu_mode_compares_gateway_st_encode_raw_sorted_and_infinity(
    tmp_path, monkeypatch, model_cache
):
    """`--device cpu`: the gateway at each concurrency vs the sorted baselines (Infinity is
    made absent here: skipped with a note)."""
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(model_cache))
    monkeypatch.setattr(peers, "DEFAULT_INFINITY_VENV", tmp_path / "no-infinity-venv")
    cfg = DocumentBenchConfig(
        model="aegis:tiny", device="cpu", docs=16, max_tokens=256, docs_per_request=4,
        concurrency=[1, 2], long_inputs=[], layers=[6], max_seconds=20, threads=1,
        out_dir=tmp_path / "docs", command="test", progress=False,
    )  # fmt: skip
    run_document_bench(cfg)
    data, rows = _rows(tmp_path / "docs/results/document_pool_cpu.json")
    assert data["mode"] == "cpu" and data["threads"] == 1
    assert {(r["path"], r["concurrency"]) for r in rows} == {
        ("gateway", 1), ("gateway", 2), ("st_encode", 1), ("raw_hf_sorted", 1)
    }  # fmt: skip
    assert any(n.startswith("infinity_torch, infinity_onnx skipped") for n in data["notes"])
    assert not (tmp_path / "docs/results/document_pool.json").exists()
    md = (tmp_path / "docs/benchmarks.md").read_text()
    assert "<!-- section:document_pool_cpu -->" in md and "## Document pool (CPU)" in md
    assert "gateway (2 in flight) vs st_encode" in md or "gateway (1 in flight) vs st_encode" in md
    assert (tmp_path / "docs/results/document_pool_cpu.png").stat().st_size > 10_000


@pytest.mark.skipif(peers.find_infinity(None) is None, reason="infinity-emb is not installed")
def test_cpu_mode_drives_infinity_on_both_engines_and_the_gateway_on_both_backends(
    tmp_path, student_dir
):
    """With scripts/install_infinity.sh's venv present: Infinity's torch and optimum engines
    and the gateway's torch and onnx backends serve the same corpus (a small model without
    layer exit keeps it short)."""
    cfg = DocumentBenchConfig(
        model=str(student_dir), device="cpu", docs=8, max_tokens=64, docs_per_request=4,
        concurrency=[2], long_inputs=[], max_seconds=5, threads=1,
        out_dir=tmp_path / "docs", command="test", progress=False,
    )  # fmt: skip
    run_document_bench(cfg)
    data, rows = _rows(tmp_path / "docs/results/document_pool_cpu.json")
    infinity = {r["engine"]: r for r in rows if r["path"] == "infinity"}
    assert set(infinity) == {"torch", "optimum"}, data["notes"]
    gateway = {r["backend"]: r for r in rows if r["path"] == "gateway"}
    assert set(gateway) == {"torch", "onnx"}
    measured = [*infinity.values(), *gateway.values()]
    assert all(r["errors"] == 0 and r["concurrency"] == 2 for r in measured)
    md = (tmp_path / "docs/benchmarks.md").read_text()
    assert "padded attention, onnx" in md and "the faster engine there" in md


def test_sorted_batches_are_longest_first_with_their_tokens():
    corpus = Corpus(["a", "bbb", "cc", "dddd", "e"], [1, 3, 2, 4, 1], per_request=2)
    batches, tokens = corpus.sorted_batches(2)
    assert batches == [["dddd", "bbb"], ["cc", "a"], ["e"]] and tokens == [7, 3, 1]
    assert corpus.requests == [["a", "bbb"], ["cc", "dddd"], ["e"]]


def test_load_driver_counts_every_unit_under_concurrency():
    import asyncio

    async def call(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return 5

    result = asyncio.run(run_load(call, 40, 8, progress=False))
    assert result.units == 200 and len(result.latencies) == 40 and result.errors == 0


def test_ratios_compare_tokens_per_second_not_documents():
    """A run cut by --max-seconds covers part of the corpus; sentence-transformers starts with
    its longest batch, so its docs/s is low for the same work. The ratio must follow tokens/s."""
    rows = [
        {"path": "st_encode", "layers": 12, "corpus": "mixed", "concurrency": 1,
         "docs_per_s": 2.0, "tokens_per_s": 600.0, "p50_ms": 1.0, "p99_ms": 1.0},
        {"path": "gateway", "layers": 12, "corpus": "mixed", "concurrency": 1,
         "docs_per_s": 4.0, "tokens_per_s": 570.0, "p50_ms": 1.0, "p99_ms": 1.0,
         "attention": "padded", "backend": "torch", "errors": 0},
        {"path": "infinity", "layers": 12, "corpus": "mixed", "concurrency": 1,
         "docs_per_s": 1.0, "tokens_per_s": 300.0, "p50_ms": 1.0, "p99_ms": 1.0,
         "engine": "torch", "errors": 0},
    ]  # fmt: skip
    cfg = DocumentBenchConfig(model="aegis:tiny", device="cpu", command="test")
    md = summarize(rows, "test machine", cfg, 0, "m")
    assert "vs st_encode: **0.95×** (570 vs 600 tokens/s; 4.0 vs 2.0 docs/s)" in md
    assert "gateway vs infinity (torch, the faster engine there): **1.90×**" in md
