"""`aegis-lab bench index`: rows, ratios, report files; through a live gateway too."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("usearch")

from aegis_client.index import IndexSpec
from aegis_lab.bench import index_quality
from aegis_lab.bench.index_quality import REFERENCE, TARGET, IndexBenchConfig, run_index_bench

SETTINGS = [REFERENCE, IndexSpec("int8", 256, rescore=False), IndexSpec("binary", 256, False),
            TARGET, IndexSpec("binary", 128, rescore=True, kind="hnsw", rotate=False)]  # fmt: skip


@dataclass
class FakeTask:
    name: str
    queries: list[str]
    documents: list[str]
    relevant: list[list[int]] = field(default_factory=list)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_suite(monkeypatch):
    rng = np.random.default_rng(3)
    tasks, vectors = [], {}
    for name in ("alpha", "beta"):
        docs = _unit(rng.standard_normal((400, 768)))
        targets = rng.choice(400, 60, replace=False)
        queries = _unit(docs[targets] + 0.6 * rng.standard_normal((60, 768)) / np.sqrt(768) * 8)
        tasks.append(FakeTask(name, [f"q{i}" for i in range(60)], [f"d{i}" for i in range(400)],
                              [[int(t)] for t in targets]))  # fmt: skip
        vectors[name] = (queries, docs)
    monkeypatch.setattr("aegis_lab.evaluation.suite.load_suite", lambda s, z, t=None: tasks)
    monkeypatch.setattr(index_quality, "_cached_vectors", lambda cfg, ts: vectors)
    return tasks


def test_rows_ratios_and_report_files(fake_suite, tmp_path):
    (tmp_path / "rag.md").write_text(
        "# RAG\n\n<!-- section:index_quality -->\n<!-- /section:index_quality -->\n"
    )
    result = run_index_bench(IndexBenchConfig(settings=SETTINGS, out_dir=tmp_path, progress=False,
                                              command="aegis-lab bench index"))  # fmt: skip
    saved = json.loads((tmp_path / "results" / "index_quality.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert (tmp_path / "results" / "index_quality.png").stat().st_size > 10_000
    rag = (tmp_path / "rag.md").read_text()
    assert rag.startswith("# RAG") and TARGET.label() in rag
    macro = {r["label"]: r for r in result["rows"] if r["task"] == "macro"}
    assert len(macro) == len(SETTINGS) and len(result["rows"]) == 3 * len(SETTINGS)
    for row in result["rows"]:
        assert {"index", "dims", "encoding", "rescore", "bytes_per_doc", "queries_per_s",
                "ndcg_at_10"} <= set(row)  # fmt: skip
    ref = macro[REFERENCE.label()]
    assert ref["ndcg_ratio"] == 1.0 and ref["bytes_per_doc"] == 3072 and ref["dims"] == 768
    target = macro[TARGET.label()]
    assert target["bytes_per_doc"] == 32 and target["rescore_bytes_per_doc"] == 768
    assert target["memory_ratio"] == 96 and target["encoding"] == "binary"
    # Rescoring earns back what the 256-dim bits lose.
    assert target["ndcg_at_10"] > macro["flat binary@256 rotated"]["ndcg_at_10"]
    assert result["target"]["memory_ratio"] == 96
    assert result["target"]["met"] == (target["ndcg_ratio"] >= 0.97)
    hnsw = macro["hnsw binary@128 + int8 rescore of 10k"]
    assert hnsw["bytes_per_doc"] > 16 and hnsw["index"] == "hnsw"


@pytest.mark.teacher
def test_vectors_through_a_live_gateway(asymmetric_pools, monkeypatch, tmp_path):
    from pairs import DOCS, QUERIES

    stack, query, document = asymmetric_pools
    runtime = stack.gateway(query, document)
    task = FakeTask("pairs", QUERIES, DOCS, [[i] for i in range(len(DOCS))])
    monkeypatch.setattr("aegis_lab.evaluation.suite.load_suite", lambda s, z, t=None: [task])
    try:
        result = run_index_bench(IndexBenchConfig(
            settings=[REFERENCE, TARGET], target=f"127.0.0.1:{runtime.port}", out_dir=tmp_path,
            progress=False,
        ))  # fmt: skip
    finally:
        stack.lt.run(runtime.handle.server.stop(0))
        stack.lt.run(runtime.close())
        stack.gateways.remove(runtime)
    assert result["source"].startswith("gateway 127.0.0.1:")
    macro = {r["label"]: r for r in result["rows"] if r["task"] == "macro"}
    assert macro[REFERENCE.label()]["ndcg_at_10"] == 1.0  # every query finds its document
