"""`aegis-lab bench document`: the document pool through the gateway vs the raw HF forward.

One run, one machine: the encoder and gateway run as separate processes (as deployed) and a
closed-loop client drives a fixed mixed-length corpus (log-uniform 32–2048 tokens) at several
concurrencies and layer-exit depths; long single inputs (8K, 32K) check the long-context path
and memory. Then, in the same run, the raw Hugging Face forward of the same texts in padded
batches (same dtype, SDPA) gives the ceiling a naive server would reach.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aegis_lab.bench.corpus import make_corpus, mixed_lengths, text_of_length, word_tokens
from aegis_lab.bench.driver import chunks, run_load
from aegis_lab.bench.report import (
    machine_description,
    markdown_table,
    today,
    write_json,
    write_section,
)


@dataclass
class DocumentBenchConfig:
    """What to measure; defaults are the GPU run."""

    model: str = "aegis:full"
    device: str = "cuda"
    dtype: str | None = None
    docs: int = 2048
    min_tokens: int = 32
    max_tokens: int = 2048
    docs_per_request: int = 16
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    layers: list[int] = field(default_factory=list)  # empty = every offered depth
    layer_concurrency: int | None = None  # default: the highest concurrency
    long_inputs: list[int] = field(default_factory=lambda: [8192, 32768])
    raw_batch_size: int = 32
    max_batch_tokens: int = 65536
    max_seconds: float = 120.0
    out_dir: Path = Path("docs")
    attention: list[str] = field(default_factory=lambda: ["padded"])
    command: str = ""
    progress: bool = True


def prepare_model(spec: str) -> Path:
    """A model dir: a path, a built-in, or a random-weight aegis-embed (`aegis:full|tiny`)."""
    if spec in ("aegis:full", "aegis:tiny"):
        from aegis_lab.random_aegis import write_aegis_embed_dir
        from aegis_serve.cache import cache_dir

        out = cache_dir() / "models" / f"aegis-embed-random-{spec.split(':')[1]}"
        if not (out / "aegis_space.json").exists():
            print(f"writing random-weight {spec} model to {out} ...", flush=True)
            write_aegis_embed_dir(out, tiny=spec == "aegis:tiny")
        return out
    from aegis_serve.models.resolve import resolve_model

    return resolve_model(spec)


class GpuMemorySampler:
    """Peak GPU memory used (MiB) while the servers run, from nvidia-smi; 0 without a GPU."""

    def __init__(self) -> None:
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=True,
                ).stdout
                self.peak_mib = max(self.peak_mib, max(int(x) for x in out.split()))
            except Exception:
                return

    def __enter__(self) -> GpuMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def _row(
    path: str,
    layers: int,
    corpus: str,
    concurrency: int,
    docs: int,
    tokens: int,
    wall: float,
    lat: list[float],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "path": path,
        "layers": layers,
        "corpus": corpus,
        "concurrency": concurrency,
        "docs_per_s": docs / wall if wall else 0.0,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50) * 1000) if lat else float("nan"),
        "p99_ms": float(np.percentile(lat, 99) * 1000) if lat else float("nan"),
        **extra,
    }


async def _drive_gateway(
    cfg: DocumentBenchConfig,
    address: str,
    corpus: list[str],
    token_counts: list[int],
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
) -> list[dict[str, Any]]:
    from aegis_client import AsyncEmbedClient

    requests = chunks(corpus, cfg.docs_per_request)
    total_tokens = sum(token_counts)
    rows: list[dict[str, Any]] = []
    async with AsyncEmbedClient(address, timeout=600) as client:
        for depth in depths:  # warm-up: every depth, a few batch shapes
            for req in requests[:4]:
                await client.embed(req, "document", layers=depth)
        layer_conc = cfg.layer_concurrency or max(cfg.concurrency)
        plan = [(c, 0) for c in cfg.concurrency]
        if layer_conc not in cfg.concurrency:
            plan.append((layer_conc, 0))
        plan += [(layer_conc, d) for d in depths if d != full_depth]
        for concurrency, depth in plan:

            async def call(i: int, depth: int = depth) -> int:
                await client.embed(requests[i], "document", layers=depth)
                return len(requests[i])

            res = await run_load(
                call,
                len(requests),
                concurrency,
                max_seconds=cfg.max_seconds,
                label=f"gateway c={concurrency} L={depth or full_depth}",
                progress=cfg.progress,
            )
            share = res.units / len(corpus)
            rows.append(
                _row(
                    "gateway",
                    depth or full_depth,
                    "mixed",
                    concurrency,
                    res.units,
                    int(total_tokens * share),
                    res.wall_s,
                    res.latencies,
                    docs_per_request=cfg.docs_per_request,
                    errors=res.errors,
                )
            )
        for n, text in long_texts.items():
            lat = []
            for _ in range(3):
                start = time.perf_counter()
                result = await client.embed([text], "document")
                lat.append(time.perf_counter() - start)
            tokens = result.input_tokens
            rows.append(
                _row(
                    "gateway",
                    full_depth,
                    f"single-{n}",
                    1,
                    3,
                    3 * tokens,
                    sum(lat),
                    lat,
                    docs_per_request=1,
                    tokens_per_doc=tokens,
                )
            )
    return rows


def run_servers(
    cfg: DocumentBenchConfig,
    model_dir: Path,
    corpus: list[str],
    token_counts: list[int],
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
    attention: str = "padded",
) -> tuple[list[dict[str, Any]], int]:
    from aegis_serve.supervisor import Child, serve_argv, stop_all

    # Tokenizer threads stay on: the encoder tokenizes in worker threads (no fork after use).
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    enc_args = [
        "encoder",
        "--attention",
        attention,
        "--role",
        "document",
        "--model",
        str(model_dir),
        "--port",
        "0",
        "--device",
        cfg.device,
        "--max-batch-tokens",
        str(cfg.max_batch_tokens),
        "--max-queue-texts",
        "100000",
        "--max-message-bytes",
        str(256 * 2**20),
    ]
    if cfg.dtype:
        enc_args += ["--dtype", cfg.dtype]
    encoder = Child("encoder", serve_argv(*enc_args), env).start()
    children = [encoder]
    try:
        encoder.wait_ready(900)
        # The query pool is left out on purpose (an unused address): only documents are driven.
        gateway = Child(
            "gateway",
            serve_argv(
                "gateway",
                "--port",
                "0",
                "--query",
                "127.0.0.1:9",
                "--document",
                encoder.address,
                "--encoder-timeout-s",
                "600",
                "--max-message-bytes",
                str(256 * 2**20),
            ),
            env,
        ).start()
        children.insert(0, gateway)
        gateway.wait_ready(120)
        with GpuMemorySampler() as mem:
            rows = asyncio.run(
                _drive_gateway(
                    cfg, gateway.address, corpus, token_counts, depths, long_texts, full_depth
                )
            )
        return rows, mem.peak_mib
    finally:
        stop_all(children, 5)


def run_raw_hf(
    cfg: DocumentBenchConfig,
    model_dir: Path,
    corpus: list[str],
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
) -> list[dict[str, Any]]:
    """Padded batches in corpus order: AutoModel + SDPA + mean pooling, same dtype."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from aegis_serve.models.embedder import DTYPES
    from aegis_serve.models.st_dir import read_st_config

    st = read_st_config(model_dir)
    dtype = cfg.dtype or ("bfloat16" if cfg.device.startswith("cuda") else "float32")
    tok = AutoTokenizer.from_pretrained(str(st.transformer_dir))
    try:  # SDPA where the architecture has it (as the encoder does), else its default
        model = AutoModel.from_pretrained(
            str(st.transformer_dir), dtype=DTYPES[dtype], attn_implementation="sdpa"
        )
    except ValueError:
        model = AutoModel.from_pretrained(str(st.transformer_dir), dtype=DTYPES[dtype])
    model = model.to(cfg.device).eval()
    layer_list = model.layers if hasattr(model, "layers") else model.encoder.layer
    owner = model if hasattr(model, "layers") else model.encoder
    attr = "layers" if hasattr(model, "layers") else "layer"

    def sync() -> None:
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()

    @torch.inference_mode()
    def embed(texts: list[str]) -> int:
        enc = tok(texts, padding=True, truncation=True, return_tensors="pt").to(cfg.device)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        return int(enc["attention_mask"].sum())

    rows = []
    batches = chunks(corpus, cfg.raw_batch_size)
    for depth in [full_depth] + [d for d in depths if d != full_depth]:
        setattr(owner, attr, torch.nn.ModuleList(list(layer_list)[:depth]))
        for b in batches[:3]:
            embed(b)
        sync()
        lat, tokens = [], 0
        deadline = time.monotonic() + cfg.max_seconds
        start = time.perf_counter()
        done = 0
        for b in batches:
            t0 = time.perf_counter()
            tokens += embed(b)
            sync()
            lat.append(time.perf_counter() - t0)
            done += len(b)
            if time.monotonic() > deadline:
                break
        wall = time.perf_counter() - start
        rows.append(
            _row(
                "raw_hf", depth, "mixed", 1, done, tokens, wall, lat, batch_size=cfg.raw_batch_size
            )
        )
    setattr(owner, attr, layer_list)
    return rows + _raw_long(embed, sync, long_texts, full_depth)


def _raw_long(embed, sync, long_texts: dict[int, str], full_depth: int) -> list[dict[str, Any]]:
    import torch

    rows: list[dict[str, Any]] = []
    for n, text in long_texts.items():
        try:
            lat = []
            for _ in range(3):
                t0 = time.perf_counter()
                tokens = embed([text])
                sync()
                lat.append(time.perf_counter() - t0)
            rows.append(
                _row(
                    "raw_hf",
                    full_depth,
                    f"single-{n}",
                    1,
                    3,
                    3 * tokens,
                    sum(lat),
                    lat,
                    tokens_per_doc=tokens,
                )
            )
        except torch.cuda.OutOfMemoryError:
            rows.append(
                {
                    "path": "raw_hf",
                    "layers": full_depth,
                    "corpus": f"single-{n}",
                    "error": "out of memory",
                }
            )
    return rows


def _mixed(rows: list[dict[str, Any]], path: str, mode: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if "error" not in r
        and r["path"] == path
        and r["corpus"] == "mixed"
        and (mode is None or r.get("attention") == mode)
    ]


def _modes(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["attention"] for r in _mixed(rows, "gateway")})


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    raw = {r["layers"]: r["docs_per_s"] for r in _mixed(rows, "raw_hf")}
    full = max(raw)
    depths = sorted(raw, reverse=True)
    modes = _modes(rows)
    width = 0.8 / (len(modes) + 1)
    x = np.arange(len(depths))
    for k, mode in enumerate(modes):
        gw = _mixed(rows, "gateway", mode)
        conc = [r for r in gw if r["layers"] == full]
        left.plot(
            [r["concurrency"] for r in conc],
            [r["docs_per_s"] for r in conc],
            "o-",
            label=f"gateway, {mode} attention",
        )
        best = [max((r["docs_per_s"] for r in gw if r["layers"] == d), default=0) for d in depths]
        right.bar(x + (k - len(modes) / 2) * width, best, width, label=f"gateway ({mode})")
    left.axhline(raw[full], color="gray", ls="--", label="raw HF padded forward")
    left.set_xscale("log", base=2)
    left.set_xlabel("requests in flight")
    left.set_ylabel("documents / s")
    left.set_title(f"{full} layers, mixed 32–2048 tokens")
    left.legend(fontsize=8)
    right.bar(
        x + (len(modes) - len(modes) / 2) * width,
        [raw[d] for d in depths],
        width,
        label="raw HF",
        color="gray",
    )
    right.set_xticks(x, [f"{d}L" for d in depths])
    right.set_ylabel("documents / s")
    right.set_title("2D-Matryoshka layer exit (best concurrency)")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(
    rows: list[dict[str, Any]], device: str, cfg: DocumentBenchConfig, peak_mib: int, model: str
) -> str:
    raw = {r["layers"]: r for r in _mixed(rows, "raw_hf")}
    full = max(raw)
    lines = [
        "## Document pool",
        "",
        f"- command: `{cfg.command}`",
        f"- machine: {device}; date: {today()}; model: {model}",
        f"- corpus: {cfg.docs} texts, log-uniform {cfg.min_tokens}–{cfg.max_tokens} tokens, "
        f"{cfg.docs_per_request} per request; raw HF: padded batches of {cfg.raw_batch_size} "
        "in corpus order, same dtype, SDPA (tokenization included in both)",
    ]
    for mode in _modes(rows):
        gw = _mixed(rows, "gateway", mode)
        best_full = max((r for r in gw if r["layers"] == full), key=lambda r: r["docs_per_s"])
        lines.append(
            f"- **{mode} attention**: gateway vs raw HF at {full} layers: "
            f"**{best_full['docs_per_s'] / raw[full]['docs_per_s']:.2f}×** "
            f"({best_full['docs_per_s']:.0f} vs {raw[full]['docs_per_s']:.0f} docs/s)"
        )
        for depth in sorted({r["layers"] for r in gw}, reverse=True):
            if depth == full:
                continue
            best = max((r for r in gw if r["layers"] == depth), key=lambda r: r["docs_per_s"])
            base = next(
                (r for r in gw if r["layers"] == full and r["concurrency"] == best["concurrency"]),
                None,
            )
            if base and base["docs_per_s"]:
                lines.append(
                    f"  - layer exit {depth}L: {best['docs_per_s'] / base['docs_per_s']:.2f}× "
                    f"the {full}L throughput (same concurrency)"
                )
    for r in rows:
        if "error" in r:
            lines.append(f"- {r['path']} ({r.get('attention', '')}) failed: {r['error']}")
    if peak_mib:
        lines.append(f"- peak GPU memory used during the gateway runs: {peak_mib / 1024:.1f} GiB")
    table_rows = [r for r in rows if "error" not in r]
    lines += [
        "",
        markdown_table(
            table_rows,
            [
                ("path", "path"),
                ("attention", "attention"),
                ("layers", "layers"),
                ("corpus", "corpus"),
                ("concurrency", "in flight"),
                ("docs_per_s", "docs/s"),
                ("tokens_per_s", "tokens/s"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("errors", "errors"),
            ],
        ),
        "",
        "![document pool](results/document_pool.png)",
        "",
    ]
    return "\n".join(lines)


def _release_gpu_memory() -> None:
    """The raw model is gone once run_raw_hf returns; hand its cache back to the servers."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_document_bench(cfg: DocumentBenchConfig) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from aegis_serve.models.st_dir import read_st_config

    model_dir = prepare_model(cfg.model)
    st = read_st_config(model_dir)
    tok = AutoTokenizer.from_pretrained(str(st.transformer_dir))
    import json

    space = (
        json.loads((model_dir / "aegis_space.json").read_text())
        if (model_dir / "aegis_space.json").exists()
        else {}
    )
    from transformers import AutoConfig

    full_depth = AutoConfig.from_pretrained(str(st.transformer_dir)).num_hidden_layers
    offered = space.get("layer_options") or [full_depth]
    depths = [d for d in (cfg.layers or offered) if d in offered] or [full_depth]
    lengths = mixed_lengths(cfg.docs, cfg.min_tokens, cfg.max_tokens)
    corpus = make_corpus(tok, lengths)
    max_len = min(tok.model_max_length, 10**6)
    token_counts = [min(len(ids), max_len) for ids in tok(corpus)["input_ids"]]
    rng = np.random.default_rng(5)
    pool = word_tokens(tok)
    long_texts = {n: text_of_length(tok, n, rng, pool) for n in cfg.long_inputs if n <= max_len}
    print(
        f"corpus: {len(corpus)} texts, {sum(token_counts)} tokens "
        f"(mean {np.mean(token_counts):.0f}); depths {depths}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    peak = 0
    device = machine_description()
    results = cfg.out_dir / "results"

    def save() -> dict[str, Any]:
        payload = {
            "device": device,
            "date": today(),
            "command": cfg.command,
            "model": str(model_dir.name),
            "peak_gpu_mib": peak,
            "rows": rows,
        }
        write_json(results / "document_pool.json", payload)
        if any(r.get("path") == "raw_hf" for r in rows):
            plot(rows, results / "document_pool.png")
            write_section(
                cfg.out_dir / "benchmarks.md",
                "document_pool",
                summarize(rows, device, cfg, peak, model_dir.name),
            )
        return payload

    # Raw HF first, so a server mode that fails or runs out of time still leaves a report.
    rows += run_raw_hf(cfg, model_dir, corpus, depths, long_texts, full_depth)
    save()
    _release_gpu_memory()
    for mode in cfg.attention:
        try:
            got, mode_peak = run_servers(
                cfg, model_dir, corpus, token_counts, depths, long_texts, full_depth, attention=mode
            )
        except Exception as exc:  # one mode failing must not lose the others' numbers
            print(f"attention={mode}: {type(exc).__name__}: {exc}", flush=True)
            rows.append({"path": "gateway", "attention": mode, "error": str(exc)[:300]})
            continue
        peak = max(peak, mode_peak)
        rows += [{**r, "attention": mode} for r in got]
        save()
    payload = save()
    return payload


def main_args(ns: Any) -> int:
    cfg = DocumentBenchConfig(
        model=ns.model,
        device=ns.device,
        dtype=ns.dtype,
        docs=ns.docs,
        docs_per_request=ns.docs_per_request,
        concurrency=[int(c) for c in ns.concurrency.split(",")],
        layers=[int(x) for x in ns.layers.split(",")] if ns.layers else [],
        long_inputs=[int(x) for x in ns.long.split(",")] if ns.long else [],
        raw_batch_size=ns.raw_batch_size,
        max_batch_tokens=ns.max_batch_tokens,
        max_seconds=ns.max_seconds,
        out_dir=Path(ns.out_dir),
        command="aegis-lab " + " ".join(sys.argv[1:]),
        attention=ns.attention.split(","),
    )
    payload = run_document_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()})
    return 0
