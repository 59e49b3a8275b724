"""`aegis-lab bench backends`: each CPU backend of the query model, speed and quality.

For every backend (torch, torch-int8, onnx, onnx-int8) on the same student model and
threads, in one run (and, with ``--baseline NAME=MODEL``, for other query models in the same
run, so the default student and the one it replaced are compared side by side): single-query
latency of the in-process model call (the floor of the query path), batched throughput, and
retrieval quality of its query vectors against the teacher's document vectors (WordNet usage →
definition, held out from distillation), plus the cosine of each query vector to the torch
backend's. Results: docs/benchmarks.md
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

from aegis_lab.bench.query import query_texts
from aegis_lab.bench.report import (
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
    baselines: dict[str, str] = field(default_factory=dict)
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
    from aegis_lab.evaluation.retrieval import evaluate_pair
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


def _model_rows(
    cfg: BackendsBenchConfig, label: str, model_dir: Path, queries: list[str], docs: np.ndarray,
    relevant: list[int], latency_texts: list[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every backend of one query model, with ratios to that model's torch backend."""
    rows, vectors = [], {}
    for backend in cfg.backends:
        row, vectors[backend] = measure_backend(
            cfg, backend, model_dir, queries, docs, relevant, latency_texts
        )
        rows.append({"model": label, **row})
    base = next((r for r in rows if r["backend"] == "torch"), rows[0])
    for row in rows:
        cos = (vectors[row["backend"]] * vectors[base["backend"]]).sum(axis=1)
        row["cos_to_torch_mean"] = float(cos.mean())
        row["cos_to_torch_min"] = float(cos.min())
        row["latency_speedup"] = base["p50_ms"] / row["p50_ms"]
        row["throughput_speedup"] = row["batch_texts_per_s"] / base["batch_texts_per_s"]
        row["ndcg_change"] = row["ndcg_at_10"] - base["ndcg_at_10"]
    return rows


def run_backends_bench(cfg: BackendsBenchConfig) -> dict[str, Any]:
    from aegis_lab.embedding_cache import embed_cached
    from aegis_lab.evaluation.retrieval import load_dataset
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.resolve import resolve_model

    unknown = set(cfg.backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {list(BACKENDS)}")
    queries, documents, relevant, desc = load_dataset(cfg.dataset)
    teacher = Embedder(resolve_model(cfg.teacher))
    doc_vectors = embed_cached(teacher, documents, "document", cfg.progress)
    del teacher
    latency_texts = query_texts(cfg.requests)
    models = {"default": cfg.model, **cfg.baselines}
    rows: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for label, spec in models.items():
        model_dir = resolve_model(spec)
        names[label] = model_dir.name
        rows += _model_rows(cfg, label, model_dir, queries, doc_vectors, relevant, latency_texts)
    default = {r["backend"]: r for r in rows if r["model"] == "default"}
    for row in rows:
        same = default.get(row["backend"])
        row["p50_vs_default"] = row["p50_ms"] / same["p50_ms"] if same else float("nan")
    payload = {
        "machine": machine_description(), "date": today(), "command": cfg.command,
        "model": names["default"], "models": names, "dataset": desc,
        "threads": cfg.threads or "torch default", "rows": rows,
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

    several = len({r["model"] for r in rows}) > 1
    names = [f"{r['model']}\n{r['backend']}" if several else r["backend"] for r in rows]
    colours = {"torch": "#777", "torch-int8": "#c84", "onnx": "#48c", "onnx-int8": "#4a4"}
    fig, axes = plt.subplots(1, 3, figsize=(13 + 2 * several, 4))
    panels = (("p50_ms", "ms per query (in-process, one at a time)"),
              ("batch_texts_per_s", "texts / s (batches)"),
              ("ndcg_at_10", "nDCG@10 student query → teacher docs"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels, strict=True):
        bar_colours = [colours.get(r["backend"], "#999") for r in rows]
        ax.bar(names, [r[key] for r in rows], color=bar_colours)
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
        f"- machine: {payload['machine']}; date: {payload['date']}; threads: {payload['threads']}",
        "- models: " + "; ".join(f"{k} = `{v}`" for k, v in payload["models"].items()),
        f"- latency: `Embedder.embed([query])` one at a time ({cfg.requests} short queries, "
        f"tokenization included); throughput: {cfg.batch_texts} texts in batches of "
        f"{cfg.batch_size}; quality: {ds['n_queries']:,} held-out WordNet queries against the "
        f"teacher's vectors of {ds['n_docs']:,} documents",
    ]  # fmt: skip
    for r in payload["rows"]:
        lines.append(
            f"- **{r['model']} / {r['backend']}**: p50 {r['p50_ms']:.2f} ms "
            f"({r['latency_speedup']:.2f}× torch), "
            f"{r['batch_texts_per_s']:,.0f} texts/s ({r['throughput_speedup']:.2f}×), nDCG@10 "
            f"{r['ndcg_at_10']:.4f} ({r['ndcg_change']:+.4f}), cos to torch mean "
            f"{r['cos_to_torch_mean']:.4f} / min {r['cos_to_torch_min']:.4f}; p50 "
            f"{r['p50_vs_default']:.2f}× the default model's"
        )
    lines += [
        "- int8 backends quantize activations with one scale per batch tensor, so a query's "
        "vector moves slightly with its batch-mates (tests/test_backends.py bounds it)",
        "",
        markdown_table(payload["rows"], [
            ("model", "model"), ("backend", "backend"), ("p50_ms", "p50 ms"),
            ("p50_vs_default", "p50 vs default"), ("p95_ms", "p95 ms"),
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
        baselines=dict(b.split("=", 1) for b in ns.baseline),
        command="aegis-lab " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    payload = run_backends_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return 0
