"""`aegis-serve bench backends`: each CPU backend of the query model, speed and quality.

For every backend (torch, torch-int8, onnx, onnx-int8) on the same student model and
threads, in one run: single-query latency of the in-process model call (the floor of the
query path), batched throughput, and retrieval quality of its query vectors against the
teacher's document vectors (WordNet usage → definition, held out from distillation),
plus the cosine of each query vector to the torch backend's. Results: docs/benchmarks.md
section "query_backends", docs/results/query_backends.json and .png.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aegis_serve.bench.query import query_texts
from aegis_serve.bench.report import (
    machine_description,
    markdown_table,
    today,
    write_json,
    write_section,
)
from aegis_serve.settings import BACKENDS


@dataclass
class BackendsBenchConfig:
    """Bounded: `requests` single queries and `batch_texts` batched texts per backend."""

    model: str = "builtin:query"
    teacher: str = "builtin:document"
    dataset: str = "wordnet"
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    threads: int = 0
    requests: int = 300
    batch_size: int = 32
    batch_texts: int = 1024
    out_dir: Path = Path("docs")
    command: str = ""
    progress: bool = True


def _latencies(emb: Any, texts: list[str], progress: bool, label: str) -> np.ndarray:
    for t in texts[:20]:
        emb.embed([t])
    out = []
    for t in tqdm(texts, desc=f"{label} c=1", disable=not progress, leave=False):
        t0 = time.perf_counter()
        emb.embed([t])
        out.append(time.perf_counter() - t0)
    return np.asarray(out) * 1000


def measure_backend(
    cfg: BackendsBenchConfig, backend: str, model_dir: Path, queries: list[str], docs: np.ndarray,
    relevant: list[int], latency_texts: list[str],
) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    from aegis_serve.evaluation.retrieval import evaluate_pair
    from aegis_serve.models.embedder import Embedder

    t0 = time.perf_counter()
    emb = Embedder(model_dir, backend=backend, threads=cfg.threads or None)
    load_s = time.perf_counter() - t0
    lat = _latencies(emb, latency_texts, cfg.progress, backend)
    batch = queries[: cfg.batch_texts]
    t0 = time.perf_counter()
    emb.embed(batch, batch_size=cfg.batch_size)
    texts_per_s = len(batch) / (time.perf_counter() - t0)
    prompt = "query" if "query" in emb.prompts else None
    vectors = emb.embed(queries, prompt_name=prompt, batch_size=64)
    row = {
        "backend": backend, "load_s": load_s, "requests": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
        "batch_texts_per_s": texts_per_s, **evaluate_pair(vectors, docs, relevant)[0],
    }  # fmt: skip
    return row, vectors


def run_backends_bench(cfg: BackendsBenchConfig) -> dict[str, Any]:
    from aegis_serve.evaluation.retrieval import load_dataset
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.resolve import resolve_model
    from aegis_serve.training.distill import embed_cached

    unknown = set(cfg.backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {list(BACKENDS)}")
    queries, documents, relevant, desc = load_dataset(cfg.dataset)
    teacher = Embedder(resolve_model(cfg.teacher))
    doc_vectors = embed_cached(teacher, documents, "document", cfg.progress)
    del teacher
    model_dir = resolve_model(cfg.model)
    latency_texts = query_texts(cfg.requests)
    rows, vectors = [], {}
    for backend in cfg.backends:
        row, vectors[backend] = measure_backend(
            cfg, backend, model_dir, queries, doc_vectors, relevant, latency_texts
        )
        rows.append(row)
    base = next((r for r in rows if r["backend"] == "torch"), rows[0])
    for row in rows:
        cos = (vectors[row["backend"]] * vectors[base["backend"]]).sum(axis=1)
        row["cos_to_torch_mean"] = float(cos.mean())
        row["cos_to_torch_min"] = float(cos.min())
        row["latency_speedup"] = base["p50_ms"] / row["p50_ms"]
        row["throughput_speedup"] = row["batch_texts_per_s"] / base["batch_texts_per_s"]
        row["ndcg_change"] = row["ndcg_at_10"] - base["ndcg_at_10"]
    payload = {
        "machine": machine_description(), "date": today(), "command": cfg.command,
        "model": model_dir.name, "dataset": desc, "threads": cfg.threads or "torch default",
        "rows": rows,
    }  # fmt: skip
    results = cfg.out_dir / "results"
    write_json(results / "query_backends.json", payload)
    plot(rows, results / "query_backends.png")
    write_section(cfg.out_dir / "benchmarks.md", "query_backends", summarize(payload, cfg))
    return payload


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["backend"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = (("p50_ms", "ms per query (in-process, one at a time)"),
              ("batch_texts_per_s", "texts / s (batches)"),
              ("ndcg_at_10", "nDCG@10 student query → teacher docs"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.bar(names, [r[key] for r in rows], color=["#777", "#c84", "#48c", "#4a4"][: len(rows)])
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(payload: dict[str, Any], cfg: BackendsBenchConfig) -> str:
    ds = payload["dataset"]
    lines = [
        "## Query model backends (CPU)", "",
        f"- command: `{payload['command']}`",
        f"- machine: {payload['machine']}; date: {payload['date']}; model: {payload['model']}; "
        f"threads: {payload['threads']}",
        f"- latency: `Embedder.embed([query])` one at a time ({cfg.requests} short queries, "
        f"tokenization included); throughput: {cfg.batch_texts} texts in batches of "
        f"{cfg.batch_size}; quality: {ds['n_queries']:,} held-out WordNet queries against the "
        f"teacher's vectors of {ds['n_docs']:,} documents",
    ]  # fmt: skip
    for r in payload["rows"]:
        lines.append(
            f"- **{r['backend']}**: p50 {r['p50_ms']:.2f} ms ({r['latency_speedup']:.2f}× torch), "
            f"{r['batch_texts_per_s']:,.0f} texts/s ({r['throughput_speedup']:.2f}×), nDCG@10 "
            f"{r['ndcg_at_10']:.4f} ({r['ndcg_change']:+.4f}), cos to torch mean "
            f"{r['cos_to_torch_mean']:.4f} / min {r['cos_to_torch_min']:.4f}"
        )
    lines += [
        "- int8 backends quantize activations with one scale per batch tensor, so a query's "
        "vector moves slightly with its batch-mates (tests/test_backends.py bounds it)",
        "",
        markdown_table(payload["rows"], [
            ("backend", "backend"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
            ("batch_texts_per_s", "texts/s batched"), ("ndcg_at_10", "nDCG@10"),
            ("mrr_at_10", "MRR@10"), ("recall_at_10", "R@10"),
            ("cos_to_torch_mean", "cos to torch"), ("load_s", "load s"),
        ]),
        "",
        "![query backends](results/query_backends.png)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main_args(ns: Any) -> int:
    cfg = BackendsBenchConfig(
        model=ns.model, teacher=ns.teacher, dataset=ns.dataset,
        backends=[b for b in ns.backends.split(",") if b], threads=ns.threads,
        requests=ns.requests, batch_texts=ns.batch_texts, out_dir=Path(ns.out_dir),
        command="aegis-serve " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    payload = run_backends_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return 0
