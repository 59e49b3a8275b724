"""`aegis-lab bench document`: the document pool through the gateway vs the baselines.

One run, one machine: the encoder and gateway run as separate processes (as deployed) and a
closed-loop client drives a fixed mixed-length corpus (log-uniform 32–2048 tokens, capped at
the model's limit) at several concurrencies and layer-exit depths; long single inputs (8K,
32K) check the long-context path and memory. In the same run, the baselines a user would
otherwise run embed the same texts in the same dtype, one batch at a time:

- `raw_hf_sorted`: the raw Hugging Face forward (AutoModel, SDPA, mean pooling) on
  length-sorted batches, as sentence-transformers' `encode` batches them;
- `st_encode`: `SentenceTransformer.encode` itself, on those same sorted batches;
- `raw_hf` (GPU run only): the raw forward on padded batches in corpus order (the naive
  server; the earlier headline compared against it).

Two modes, by device. GPU (`--device cuda`, e.g. `aegis:full`): the above plus attention
modes and layer exit, written to docs/results/document_pool.json. CPU (`--device cpu`, e.g.
the default document model `builtin:document`): the gateway vs `st_encode` vs
`raw_hf_sorted` vs Infinity (its torch and optimum engines, bench/peers.py) at each
concurrency, rows `{path: gateway|st_encode|raw_hf_sorted|infinity, concurrency, docs_per_s,
p50_ms, ...}` written to docs/results/document_pool_cpu.json.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
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
    threads: int = 0  # CPU runs: torch threads of every system (0 = torch default: all cores)
    cpu_mode: bool | None = None  # None: when device is cpu
    infinity_bin: str | None = None  # CPU runs: None = the default venv's (else skipped)
    peers: list[str] = field(default_factory=lambda: ["infinity_torch", "infinity_onnx"])
    backends: list[str] = field(default_factory=list)  # encoder backends; empty = _backends
    notes: list[str] = field(default_factory=list)

    @property
    def cpu(self) -> bool:
        return self.device == "cpu" if self.cpu_mode is None else self.cpu_mode

    @property
    def results_name(self) -> str:
        """docs/results/<name>.json|png and the benchmarks.md section."""
        return "document_pool_cpu" if self.cpu else "document_pool"


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


@dataclass
class Corpus:
    """The texts every path embeds, their token counts (capped at the model's limit) and
    how they are cut into requests."""

    texts: list[str]
    tokens: list[int]
    per_request: int

    @property
    def requests(self) -> list[list[str]]:
        return chunks(self.texts, self.per_request)

    def sorted_batches(self, size: int) -> tuple[list[list[str]], list[int]]:
        """Batches of `size` texts, longest first (the order sentence-transformers' encode
        batches in), and their token counts."""
        order = sorted(range(len(self.texts)), key=lambda i: -self.tokens[i])
        texts = [self.texts[i] for i in order]
        tokens = [self.tokens[i] for i in order]
        return chunks(texts, size), [sum(tokens[i : i + size]) for i in range(0, len(texts), size)]


async def _load_row(
    path: str,
    call: Callable[[int], Awaitable[int]],
    cfg: DocumentBenchConfig,
    corpus: Corpus,
    concurrency: int,
    layers: int,
    **extra: Any,
) -> dict[str, Any]:
    """One closed-loop run of the corpus' requests at `concurrency` in flight, as a row."""
    requests = corpus.requests
    res = await run_load(call, len(requests), concurrency, max_seconds=cfg.max_seconds,
                         label=f"{path} c={concurrency} L={layers}",
                         progress=cfg.progress)  # fmt: skip
    tokens = int(sum(corpus.tokens) * res.units / len(corpus.texts))
    return _row(path, layers, "mixed", concurrency, res.units, tokens, res.wall_s, res.latencies,
                docs_per_request=corpus.per_request, errors=res.errors, **extra)  # fmt: skip


async def _drive_gateway(
    cfg: DocumentBenchConfig,
    address: str,
    corpus: Corpus,
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
) -> list[dict[str, Any]]:
    from aegis_client import AsyncEmbedClient

    requests = corpus.requests
    rows: list[dict[str, Any]] = []
    async with AsyncEmbedClient(address, timeout=600, max_attempts=1) as client:
        for depth in depths:  # warm-up: every depth, a few batch shapes
            for req in requests[:4]:
                await client.embed(req, "document", layers=depth)
        layer_conc = cfg.layer_concurrency or max(cfg.concurrency)
        plan = [(c, 0) for c in cfg.concurrency]
        if len(depths) > 1 and layer_conc not in cfg.concurrency:
            plan.append((layer_conc, 0))
        plan += [(layer_conc, d) for d in depths if d != full_depth]
        for concurrency, depth in plan:

            async def call(i: int, depth: int = depth) -> int:
                await client.embed(requests[i], "document", layers=depth)
                return len(requests[i])

            rows.append(
                await _load_row("gateway", call, cfg, corpus, concurrency, depth or full_depth)
            )
        for n, text in long_texts.items():
            lat = []
            for _ in range(3):
                start = time.perf_counter()
                result = await client.embed([text], "document")
                lat.append(time.perf_counter() - start)
            tokens = result.input_tokens
            rows.append(_row("gateway", full_depth, f"single-{n}", 1, 3, 3 * tokens, sum(lat),
                             lat, docs_per_request=1, tokens_per_doc=tokens))  # fmt: skip
    return rows


def run_servers(
    cfg: DocumentBenchConfig,
    model_dir: Path,
    corpus: Corpus,
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
    attention: str = "padded",
    backend: str = "torch",
) -> tuple[list[dict[str, Any]], int]:
    from aegis_serve.supervisor import Child, serve_argv, stop_all

    # Tokenizer threads stay on: the encoder tokenizes in worker threads (no fork after use).
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    enc_args = [
        "encoder", "--attention", attention, "--role", "document", "--model", str(model_dir),
        "--port", "0", "--device", cfg.device, "--max-batch-tokens", str(cfg.max_batch_tokens),
        "--max-queue-texts", "100000", "--max-message-bytes", str(256 * 2**20),
    ]  # fmt: skip
    if cfg.dtype:
        enc_args += ["--dtype", cfg.dtype]
    if cfg.threads:
        enc_args += ["--threads", str(cfg.threads)]
    if backend != "torch":
        enc_args += ["--backend", backend]
    encoder = Child("encoder", serve_argv(*enc_args), env).start()
    children = [encoder]
    try:
        encoder.wait_ready(900)
        # The query pool is left out on purpose (an unused address): only documents are driven.
        gw_args = ["gateway", "--port", "0", "--query", "127.0.0.1:9", "--document",
                   encoder.address, "--encoder-timeout-s", "600",
                   "--max-message-bytes", str(256 * 2**20)]  # fmt: skip
        gateway = Child("gateway", serve_argv(*gw_args), env).start()
        children.insert(0, gateway)
        gateway.wait_ready(120)
        with GpuMemorySampler() as mem:
            rows = asyncio.run(
                _drive_gateway(cfg, gateway.address, corpus, depths, long_texts, full_depth)
            )
        return rows, mem.peak_mib
    finally:
        stop_all(children, 5)


def _dtype(cfg: DocumentBenchConfig) -> str:
    return cfg.dtype or ("bfloat16" if cfg.device.startswith("cuda") else "float32")


def _document_prompt(model_dir: Path) -> str:
    """The prompt the document pool puts before each text (as the encoder resolves it)."""
    from aegis_serve.models.st_dir import read_st_config

    st = read_st_config(model_dir)
    name = "document" if "document" in st.prompts else (st.default_prompt_name or "")
    return st.prompts.get(name, "") if name else ""


def _timed_batches(
    embed: Callable[[list[str]], Any],
    sync: Callable[[], None],
    batches: list[list[str]],
    cfg: DocumentBenchConfig,
) -> tuple[list[float], int, float, int]:
    """Warm up on 3 batches, then embed batches one at a time until done or max_seconds:
    (latencies, docs, wall seconds, batches done)."""
    for b in batches[:3]:
        embed(b)
    sync()
    lat, done = [], 0
    deadline = time.monotonic() + cfg.max_seconds
    start = time.perf_counter()
    for b in batches:
        t0 = time.perf_counter()
        embed(b)
        sync()
        lat.append(time.perf_counter() - t0)
        done += len(b)
        if time.monotonic() > deadline:
            break
    return lat, done, time.perf_counter() - start, len(lat)


def _sync(device: str) -> Callable[[], None]:
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return sync


def run_raw_hf(
    cfg: DocumentBenchConfig,
    model_dir: Path,
    corpus: Corpus,
    depths: list[int],
    long_texts: dict[int, str],
    full_depth: int,
) -> list[dict[str, Any]]:
    """AutoModel + SDPA + mean pooling, same dtype, one batch at a time: length-sorted batches
    (`raw_hf_sorted`, as sentence-transformers batches; at every depth) and, on GPU runs,
    padded batches in corpus order (`raw_hf`; full depth only, for continuity)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from aegis_serve.models.embedder import DTYPES
    from aegis_serve.models.st_dir import read_st_config

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    st = read_st_config(model_dir)
    prompt = _document_prompt(model_dir)
    tok = AutoTokenizer.from_pretrained(str(st.transformer_dir))
    dtype = DTYPES[_dtype(cfg)]
    try:  # SDPA where the architecture has it (as the encoder does), else its default
        model = AutoModel.from_pretrained(
            str(st.transformer_dir), dtype=dtype, attn_implementation="sdpa"
        )
    except ValueError:
        model = AutoModel.from_pretrained(str(st.transformer_dir), dtype=dtype)
    model = model.to(cfg.device).eval()
    layer_list = model.layers if hasattr(model, "layers") else model.encoder.layer
    owner = model if hasattr(model, "layers") else model.encoder
    attr = "layers" if hasattr(model, "layers") else "layer"
    sync = _sync(cfg.device)

    @torch.inference_mode()
    def embed(texts: list[str]) -> int:
        texts = [prompt + t for t in texts] if prompt else texts
        enc = tok(texts, padding=True, truncation=True, return_tensors="pt").to(cfg.device)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        return int(enc["attention_mask"].sum())

    orders = {"raw_hf_sorted": corpus.sorted_batches(cfg.raw_batch_size)}
    if not cfg.cpu:  # the naive server's order, kept on GPU runs for continuity
        batches = chunks(corpus.texts, cfg.raw_batch_size)
        sizes = [sum(corpus.tokens[i : i + cfg.raw_batch_size])
                 for i in range(0, len(corpus.texts), cfg.raw_batch_size)]  # fmt: skip
        orders["raw_hf"] = (batches, sizes)
    rows = []
    for depth in [full_depth] + [d for d in depths if d != full_depth]:
        setattr(owner, attr, torch.nn.ModuleList(list(layer_list)[:depth]))
        for path, (batches, sizes) in orders.items():
            if path == "raw_hf" and depth != full_depth:
                continue
            lat, done, wall, n = _timed_batches(embed, sync, batches, cfg)
            rows.append(_row(path, depth, "mixed", 1, done, sum(sizes[:n]), wall, lat,
                             batch_size=cfg.raw_batch_size))  # fmt: skip
    setattr(owner, attr, layer_list)
    return rows + _raw_long(embed, sync, long_texts, full_depth)


def run_st_encode(
    cfg: DocumentBenchConfig, model_dir: Path, corpus: Corpus
) -> list[dict[str, Any]]:
    """`SentenceTransformer.encode` on the same length-sorted batches, same dtype (full depth;
    sentence-transformers has no layer exit). Skipped, with a note, when not installed."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        cfg.notes.append("st_encode skipped: sentence-transformers is not installed")
        return []
    from aegis_serve.models.embedder import DTYPES

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    kwargs: dict[str, Any] = {"dtype": DTYPES[_dtype(cfg)], "attn_implementation": "sdpa"}
    try:
        model = SentenceTransformer(str(model_dir), device=cfg.device, model_kwargs=kwargs)
    except (ValueError, ImportError):  # no SDPA for this architecture: its default
        kwargs.pop("attn_implementation")
        model = SentenceTransformer(str(model_dir), device=cfg.device, model_kwargs=kwargs)
    prompt_name = "document" if "document" in (model.prompts or {}) else None
    batches, sizes = corpus.sorted_batches(cfg.raw_batch_size)

    def embed(texts: list[str]) -> None:
        model.encode(texts, batch_size=len(texts), prompt_name=prompt_name,
                     convert_to_numpy=True)  # fmt: skip

    lat, done, wall, n = _timed_batches(embed, _sync(cfg.device), batches, cfg)
    full = len(_layer_list_of(model))
    return [_row("st_encode", full, "mixed", 1, done, sum(sizes[:n]), wall, lat,
                 batch_size=cfg.raw_batch_size)]  # fmt: skip


def _layer_list_of(model: Any) -> Any:
    auto = model[0].auto_model
    return auto.layers if hasattr(auto, "layers") else auto.encoder.layer


def run_infinity(
    cfg: DocumentBenchConfig, model_dir: Path, corpus: Corpus, full_depth: int
) -> list[dict[str, Any]]:
    """Infinity (bench/peers.py) on each of its CPU engines, one loaded at a time, driven like
    the gateway: the corpus' requests at each concurrency (path `infinity`, `engine` names
    which). Skipped, with a note, when not installed or when it fails to start."""
    from aegis_lab.bench.peers import INFINITY_ENGINES, start_infinity_peers

    engines = [p for p in cfg.peers if p in INFINITY_ENGINES]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="infinity-peer-") as scratch:
        threads = cfg.threads or os.cpu_count() or 1
        started = start_infinity_peers(
            engines, cfg.infinity_bin, model_dir, threads, Path(scratch), cfg.notes
        )
        try:
            for name, peer in started:
                engine = INFINITY_ENGINES[name]
                rows += asyncio.run(_drive_infinity(cfg, peer.address, corpus, full_depth, engine))
        finally:
            for _, peer in started:
                peer.terminate()
    return rows


async def _drive_infinity(
    cfg: DocumentBenchConfig, address: str, corpus: Corpus, full_depth: int, engine: str
) -> list[dict[str, Any]]:
    from aegis_lab.bench.peers import infinity_client, infinity_embed

    requests = corpus.requests
    rows = []
    async with infinity_client(address, max(cfg.concurrency), timeout=600) as client:
        for req in requests[:4]:  # warm-up
            await infinity_embed(client, req)

        async def call(i: int) -> int:
            await infinity_embed(client, requests[i])
            return len(requests[i])

        for concurrency in cfg.concurrency:
            rows.append(await _load_row("infinity", call, cfg, corpus, concurrency, full_depth,
                                        engine=engine))  # fmt: skip
    return rows


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
            rows.append(_row("raw_hf_sorted", full_depth, f"single-{n}", 1, 3, 3 * tokens,
                             sum(lat), lat, tokens_per_doc=tokens))  # fmt: skip
        except torch.cuda.OutOfMemoryError:
            rows.append({"path": "raw_hf_sorted", "layers": full_depth, "corpus": f"single-{n}",
                         "error": "out of memory"})  # fmt: skip
    return rows


def _setting(row: dict[str, Any]) -> str:
    """A gateway row's encoder setting, as the report names it."""
    backend = row.get("backend", "torch")
    return f"{row.get('attention')} attention" + ("" if backend == "torch" else f", {backend}")


def _mixed(rows: list[dict[str, Any]], path: str, mode: str | None = None) -> list[dict[str, Any]]:
    """Rows of `path` on the mixed corpus (of one gateway setting, `mode`, if given)."""
    return [
        r
        for r in rows
        if "error" not in r
        and r["path"] == path
        and r["corpus"] == "mixed"
        and (mode is None or _setting(r) == mode)
    ]


def _modes(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({_setting(r) for r in _mixed(rows, "gateway")})


BASELINES = ("st_encode", "raw_hf_sorted", "raw_hf")  # best-practice first


def _baselines(rows: list[dict[str, Any]], depth: int) -> dict[str, dict[str, Any]]:
    """The baselines measured at `depth` (one batch at a time: one row each)."""
    found = {}
    for path in BASELINES:
        row = next((r for r in _mixed(rows, path) if r["layers"] == depth), None)
        if row is not None:
            found[path] = row
    return found


def _full_depth(rows: list[dict[str, Any]]) -> int:
    return max(r["layers"] for r in rows if "error" not in r and r["corpus"] == "mixed")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """GPU runs: throughput per concurrency per attention mode against the baselines, and
    layer exit. CPU runs (rows with `infinity` or no layer exit): gateway vs Infinity's
    engines per concurrency against the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = _full_depth(rows)
    base = _baselines(rows, full)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for mode in _modes(rows):
        conc = [r for r in _mixed(rows, "gateway", mode) if r["layers"] == full]
        left.plot([r["concurrency"] for r in conc], [r[RATE] for r in conc], "o-",
                  label=f"gateway, {mode}")  # fmt: skip
    for engine in sorted({r.get("engine", "") for r in _mixed(rows, "infinity")}):
        conc = [r for r in _mixed(rows, "infinity") if r.get("engine") == engine]
        left.plot([r["concurrency"] for r in conc], [r[RATE] for r in conc], "s--",
                  label=f"infinity ({engine})")  # fmt: skip
    for (name, row), style in zip(base.items(), (":", "--", "-."), strict=False):
        left.axhline(row[RATE], color="gray", ls=style, label=f"{name} (1 batch at a time)")
    left.set_xscale("log", base=2)
    left.set_xlabel("requests in flight")
    left.set_ylabel("document tokens / s")
    left.set_title(f"{full} layers, mixed-length documents")
    left.legend(fontsize=8)
    depths = sorted({r["layers"] for r in _mixed(rows, "gateway")}, reverse=True)
    modes = _modes(rows)
    width = 0.8 / (len(modes) + 1)
    x = np.arange(len(depths))
    for k, mode in enumerate(modes):
        gw = _mixed(rows, "gateway", mode)
        best = [max((r[RATE] for r in gw if r["layers"] == d), default=0) for d in depths]
        right.bar(x + (k - len(modes) / 2) * width, best, width, label=f"gateway ({mode})")
    ref = next((b for b in ("raw_hf_sorted", "raw_hf") if b in base), None)  # every depth
    if ref is not None:
        values = [_baselines(rows, d).get(ref, {}).get(RATE, 0) for d in depths]
        right.bar(x + (len(modes) - len(modes) / 2) * width, values, width, label=ref,
                  color="gray")  # fmt: skip
    right.set_xticks(x, [f"{d}L" for d in depths])
    right.set_ylabel("document tokens / s")
    right.set_title("by depth (2D-Matryoshka layer exit; best concurrency)")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Ratios compare document tokens per second: a run capped by --max-seconds covers only part
# of the corpus, and sentence-transformers starts with its longest batch, so docs/s of two
# partial runs would compare different documents (tokens/s does not care which were done).
RATE = "tokens_per_s"


def _x(a: dict[str, Any], b: dict[str, Any]) -> str:
    if not b[RATE]:
        return "n/a"
    return (f"**{a[RATE] / b[RATE]:.2f}×** ({a[RATE]:,.0f} vs {b[RATE]:,.0f} tokens/s; "
            f"{a['docs_per_s']:,.1f} vs {b['docs_per_s']:,.1f} docs/s)")  # fmt: skip


def _best_infinity(rows: list[dict[str, Any]], concurrency: int) -> dict[str, Any] | None:
    at = [r for r in _mixed(rows, "infinity") if r["concurrency"] == concurrency]
    return max(at, key=lambda r: r[RATE], default=None)


def _table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        [r for r in rows if "error" not in r],
        [("path", "path"), ("engine", "engine"), ("attention", "attention"), ("layers", "layers"),
         ("backend", "backend"), ("corpus", "corpus"), ("concurrency", "in flight"),
         ("docs_per_s", "docs/s"),
         ("tokens_per_s", "tokens/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
         ("errors", "errors")],
    )  # fmt: skip


def summarize(
    rows: list[dict[str, Any]], device: str, cfg: DocumentBenchConfig, peak_mib: int, model: str
) -> str:
    full = _full_depth(rows)
    base = _baselines(rows, full)
    title = "## Document pool (CPU)" if cfg.cpu else "## Document pool"
    lines = [
        title,
        "",
        f"- command: `{cfg.command}`",
        f"- machine: {device}; date: {today()}; model: {model}; dtype {_dtype(cfg)}"
        + (f"; {cfg.threads} threads per system" if cfg.threads else ""),
        f"- corpus: {cfg.docs} texts, log-uniform {cfg.min_tokens}–{cfg.max_tokens} tokens, "
        f"{cfg.docs_per_request} per request; baselines one batch of {cfg.raw_batch_size} at a "
        "time: `st_encode` = SentenceTransformer.encode, `raw_hf_sorted` = AutoModel + SDPA + "
        "mean pooling, both on length-sorted batches (sentence-transformers' order)"
        + ("" if cfg.cpu else ", `raw_hf` = the same forward in corpus order")
        + "; same dtype, tokenization included everywhere",
    ]
    for mode in _modes(rows):
        gw = [r for r in _mixed(rows, "gateway", mode) if r["layers"] == full]
        if not gw:
            continue
        best = max(gw, key=lambda r: r[RATE])
        where = f"{best['concurrency']} in flight"
        for name, row in base.items():
            lines.append(f"- **{mode}**, {full} layers: gateway ({where}) vs {name}: "
                         f"{_x(best, row)}")  # fmt: skip
        for r in gw:
            peer = _best_infinity(rows, r["concurrency"])
            if peer is not None:
                lines.append(
                    f"- {mode}, {r['concurrency']} in flight: gateway vs infinity "
                    f"({peer['engine']}, the faster engine there): {_x(r, peer)}"
                )
        for depth in sorted({r["layers"] for r in _mixed(rows, "gateway", mode)}, reverse=True):
            if depth == full:
                continue
            at = [r for r in _mixed(rows, "gateway", mode) if r["layers"] == depth]
            best = max(at, key=lambda r: r[RATE])
            same = next((r for r in gw if r["concurrency"] == best["concurrency"]), None)
            if same and same[RATE]:
                lines.append(
                    f"  - layer exit {depth}L: {best[RATE] / same[RATE]:.2f}× "
                    f"the {full}L throughput (same concurrency)"
                )
    for r in rows:
        if "error" in r:
            lines.append(f"- {r['path']} ({_setting(r)}) failed: {r['error']}")
    lines += [f"- note: {n}" for n in cfg.notes]
    if peak_mib:
        lines.append(f"- peak GPU memory used during the gateway runs: {peak_mib / 1024:.1f} GiB")
    name = cfg.results_name
    lines += ["", _table(rows), "", f"![document pool](results/{name}.png)", ""]
    return "\n".join(lines)


def _release_gpu_memory() -> None:
    """The raw model is gone once run_raw_hf returns; hand its cache back to the servers."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _backends(cfg: DocumentBenchConfig, layer_options: list[int]) -> list[str]:
    """The encoder backends to measure: the configured ones, else torch, plus onnx on CPU
    runs where it serves the model (the `onnx` extra installed, no layer exit), so the
    gateway is measured at its best as the peers are."""
    if cfg.backends:
        return list(cfg.backends)
    from aegis_serve.models.onnx_runtime import onnx_available

    if cfg.cpu and onnx_available() and len(layer_options) == 1:
        return ["torch", "onnx"]
    return ["torch"]


def run_document_bench(cfg: DocumentBenchConfig) -> dict[str, Any]:
    import json

    from transformers import AutoConfig, AutoTokenizer

    from aegis_serve.models.st_dir import read_st_config

    model_dir = prepare_model(cfg.model)
    st = read_st_config(model_dir)
    tok = AutoTokenizer.from_pretrained(str(st.transformer_dir))
    manifest = model_dir / "aegis_space.json"
    space = json.loads(manifest.read_text()) if manifest.exists() else {}
    full_depth = AutoConfig.from_pretrained(str(st.transformer_dir)).num_hidden_layers
    offered = space.get("layer_options") or [full_depth]
    depths = [d for d in (cfg.layers or offered) if d in offered] or [full_depth]
    max_len = min(tok.model_max_length, st.max_seq_length or 10**6, 10**6)
    cfg.max_tokens = min(cfg.max_tokens, max_len)  # longer would only be cut
    cfg.min_tokens = min(cfg.min_tokens, cfg.max_tokens)
    lengths = mixed_lengths(cfg.docs, cfg.min_tokens, cfg.max_tokens)
    texts = make_corpus(tok, lengths)
    token_counts = [min(len(ids), max_len) for ids in tok(texts)["input_ids"]]
    corpus = Corpus(texts, token_counts, cfg.docs_per_request)
    rng = np.random.default_rng(5)
    pool = word_tokens(tok)
    long_texts = {n: text_of_length(tok, n, rng, pool) for n in cfg.long_inputs if n <= max_len}
    print(
        f"corpus: {len(texts)} texts, {sum(token_counts)} tokens "
        f"(mean {np.mean(token_counts):.0f}); depths {depths}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    peak = 0
    device = machine_description()
    results = cfg.out_dir / "results"

    def save() -> dict[str, Any]:
        payload = {"device": device, "date": today(), "command": cfg.command,
                   "model": str(model_dir.name), "mode": "cpu" if cfg.cpu else "gpu",
                   "threads": cfg.threads, "peak_gpu_mib": peak, "rows": rows,
                   "notes": list(cfg.notes)}  # fmt: skip
        write_json(results / f"{cfg.results_name}.json", payload)
        if any(r.get("path") in BASELINES and "error" not in r for r in rows):
            plot(rows, results / f"{cfg.results_name}.png")
            write_section(cfg.out_dir / "benchmarks.md", cfg.results_name,
                          summarize(rows, device, cfg, peak, model_dir.name))  # fmt: skip
        return payload

    # Baselines first, so a server mode that fails or runs out of time still leaves a report.
    rows += run_raw_hf(cfg, model_dir, corpus, depths, long_texts, full_depth)
    _release_gpu_memory()
    rows += run_st_encode(cfg, model_dir, corpus)
    _release_gpu_memory()  # (both baseline models are gone: their functions returned)
    save()
    for mode, backend in [(m, b) for b in _backends(cfg, offered) for m in cfg.attention]:
        setting = {"attention": mode, "backend": backend}
        try:
            got, mode_peak = run_servers(cfg, model_dir, corpus, depths, long_texts, full_depth,
                                         attention=mode, backend=backend)  # fmt: skip
        except Exception as exc:  # one mode failing must not lose the others' numbers
            print(f"{setting}: {type(exc).__name__}: {exc}", flush=True)
            rows.append({"path": "gateway", **setting, "error": str(exc)[:300]})
            continue
        peak = max(peak, mode_peak)
        rows += [{**r, **setting} for r in got]
        save()
    if cfg.cpu:
        rows += run_infinity(cfg, model_dir, corpus, full_depth)
    return save()


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
        threads=ns.threads,
        infinity_bin=ns.infinity_bin or None,
        peers=[p for p in ns.peers.split(",") if p],
    )
    payload = run_document_bench(cfg)
    for row in payload["rows"]:
        print({k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()})
    for note in payload["notes"]:
        print("note:", note)
    return 0
