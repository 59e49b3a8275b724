"""The peers the benches compare against, run on the same model directory and cores.

`naive_st` is what a user would otherwise write: ``SentenceTransformer(model_dir)`` and one
``model.encode([text])`` per request behind a small server, no batching. It speaks our own
``aegis.encoder.v1.EncoderService/Encode`` over gRPC (a sync ``grpc.server`` with the
helloworld example's ``ThreadPoolExecutor(max_workers=10)``), so the bench drives it with
the same grpc.aio client as the encoder row and only the serving side differs. A lock keeps
one ``encode`` at a time: a shared fast tokenizer raises "Already borrowed" under concurrent
calls, and parallel forwards would only oversubscribe the same cores.

Infinity is infinity-emb (``infinity_emb v2``, CPU) from its own venv
(scripts/install_infinity.sh), at its best on each of its two CPU engines: ``--engine torch``
(sentence-transformers; row ``infinity_torch``) and ``--engine optimum`` (ONNX Runtime, with
optimum's graph optimizer; row ``infinity_onnx``). The optimum engine only loads an ``.onnx``
file it finds in the model directory, so it gets a scratch copy of the directory holding the
ONNX export of the same transformer that aegis-serve's ``onnx`` backend runs
(`infinity_model_dir`). It is driven over REST ``POST /embeddings`` with base64 float32
vectors through ``aiohttp.ClientSession`` (HTTP/1.1, a keep-alive pool as large as the requests
in flight), so per-request client work stays close to the gRPC client's. (httpx was tried
first: its connection pool costs grow with the requests in flight, encode/httpx#3215, and at
64 in flight it, not Infinity, set the pace: 84 q/s for Infinity's optimum engine where
aiohttp measures 574 q/s on the same machine.)

Every server is a subprocess in its own session on 127.0.0.1 with a free port
(`aegis_serve.supervisor.Child`), stopped (SIGTERM to its process group, then SIGKILL) by
whoever started it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aegis_serve.models.st_dir import read_st_config
from aegis_serve.supervisor import Child, ChildFailed

if TYPE_CHECKING:
    import aiohttp

DEFAULT_INFINITY_VENV = Path("/tmp/infinity-venv")
INFINITY_MODEL_NAME = "peer"  # --served-model-name: the "model" field of each request
# Bench row name -> `infinity_emb v2 --engine` value (its two CPU engines).
INFINITY_ENGINES = {"infinity_torch": "torch", "infinity_onnx": "optimum"}
NAIVE_WORKERS = 10  # grpc's helloworld example server


# ------------------------------------------------------------------ processes
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ naive ST
def naive_st_available() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def start_naive_st(
    model_dir: Path,
    threads: int,
    *,
    workers: int = NAIVE_WORKERS,
    timeout: float = 300.0,
) -> Child:
    """Start the naive Sentence-Transformers gRPC server; returns once it serves."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "aegis_lab.bench.peers", "naive-st", "--model", str(model_dir),
           "--threads", str(threads), "--workers", str(workers)]  # fmt: skip
    peer = Child("naive_st", cmd, env).start()
    try:
        return peer.wait_ready(timeout)
    except BaseException:
        peer.terminate()
        raise


def serve_naive_st(model_dir: str, threads: int, workers: int, host: str, port: int) -> None:
    """The server itself (runs in the subprocess): one `model.encode(texts)` per request."""
    from concurrent import futures

    import grpc
    import torch
    from sentence_transformers import SentenceTransformer

    from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    lock = threading.Lock()
    name = Path(model_dir).name

    class Naive(encoder_pb2_grpc.EncoderServiceServicer):
        def Encode(self, request, context):
            texts = list(request.texts)
            if not texts:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts is empty")
            with lock:
                vecs = model.encode(texts, convert_to_numpy=True)
            vecs = np.ascontiguousarray(vecs, dtype="<f4")
            return encoder_pb2.EncodeResponse(
                matrix=vecs.tobytes(), rows=vecs.shape[0], cols=vecs.shape[1], model=name
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    encoder_pb2_grpc.add_EncoderServiceServicer_to_server(Naive(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY naive_st address={host}:{bound} threads={threads} workers={workers}", flush=True)
    stop.wait()
    server.stop(2).wait(5)


# ------------------------------------------------------------------ Infinity
def find_infinity(explicit: str | None) -> Path | None:
    """`--infinity-bin` if given (must exist), else the default venv's, else None (skip)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"--infinity-bin {path} is not an executable file")
        return path
    default = DEFAULT_INFINITY_VENV / "bin" / "infinity_emb"
    return default if default.is_file() and os.access(default, os.X_OK) else None


def infinity_model_dir(
    model_dir: Path, onnx_file: Path, out: Path, max_tokens: int | None = None
) -> Path:
    """`out`: `model_dir`'s files (symlinked) plus `model.onnx` (the given export), for
    Infinity's optimum engine, which loads the one ``.onnx`` file it finds there and writes its
    optimized graph beside it (so never into the real model directory).

    With `max_tokens`, `config.json` is a copy whose `max_position_embeddings` is at most
    `max_tokens`: that engine truncates its inputs at `max_position_embeddings` tokens (not at
    the model's `max_seq_length`), which for MPNet/RoBERTa-style models is 2 more than their
    position table holds (padding offset), so its start-up warm-up at 512 tokens fails with
    "indices element out of data bounds" (all-mpnet-base-v2: exit code 3). Cutting it to the
    tokens aegis-serve serves makes it start and truncate where aegis-serve does."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in model_dir.iterdir():
        if entry.name == "onnx" or entry.suffix == ".onnx":
            continue  # only our export: the same graph (and precision) as the onnx backend
        target = out / entry.name
        if max_tokens and entry.name == "config.json":
            config = json.loads(entry.read_text(encoding="utf-8"))
            limit = config.get("max_position_embeddings")
            if isinstance(limit, int) and limit > max_tokens:
                config["max_position_embeddings"] = max_tokens
            target.unlink(missing_ok=True)
            target.write_text(json.dumps(config, indent=2), encoding="utf-8")
            continue
        if not target.exists():
            target.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    link = out / "model.onnx"
    if not link.exists():
        link.symlink_to(onnx_file.resolve())
    return out


def onnx_export(model_dir: Path) -> tuple[Path, int]:
    """The cached ONNX export of `model_dir`'s transformer (the `onnx` backend's own file;
    needs the `onnx` extra, else BackendUnavailable) and the tokens per input it serves."""
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.onnx_runtime import prepared_model

    emb = Embedder(model_dir)
    path = prepared_model(emb.model, emb.cfg.transformer_dir, "onnx", emb.max_tokens)
    return path, emb.max_tokens


def start_infinity(
    infinity_bin: Path,
    model_dir: Path,
    threads: int,
    *,
    engine: str = "torch",
    pooling: str = "auto",
    timeout: float = 300.0,
) -> Child:
    """`infinity_emb v2` on 127.0.0.1 (CPU, its own venv) with `engine` (torch or optimum;
    for optimum, `model_dir` must hold an .onnx file: see `infinity_model_dir`); returns once
    healthy.

    The optimum engine is started in `model_dir` as `--model-id .`: infinity-emb hands the
    .onnx path it found to optimum as `file_name`, and optimum 2 accepts only a name relative
    to the directory (an absolute one fails at start: "Could not find any ONNX files with
    target file name ..."). Its optimized graph goes to a Hugging Face cache of its own beside
    `model_dir` (infinity keys that cache by the model id, which `.` would make shared)."""
    if engine not in INFINITY_ENGINES.values():
        raise ValueError(f"unknown infinity engine {engine!r}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(HF_HUB_OFFLINE="1", DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0",
               TOKENIZERS_PARALLELISM="false")  # fmt: skip
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    engine_args = ["--engine", engine]
    model_id, cwd = str(model_dir), None
    if engine == "torch":
        engine_args.append("--no-bettertransformer")
    else:
        model_id, cwd = ".", model_dir
        env["HF_HUB_CACHE"] = str(model_dir.parent / f"{model_dir.name}-hf-cache")
        # Its own pooling (the torch engine runs the directory's Pooling module): `auto`
        # would be CLS pooling there, so the model's mode is passed on.
        engine_args += ["--pooling-method", pooling]
    cmd = [str(infinity_bin), "v2", "--model-id", model_id,
           "--served-model-name", INFINITY_MODEL_NAME, "--device", "cpu", *engine_args,
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    # (--log-level warning: no uvicorn access-log line per request, Infinity at its best)
    peer = Child(f"infinity_{engine}", cmd, env, cwd=cwd).start()
    peer.fields["address"] = f"127.0.0.1:{port}"  # it prints no READY line: probe /health
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not peer.alive:
                raise ChildFailed(f"infinity exited with code {peer.returncode}:\n{peer.tail()}")
            try:
                with urllib.request.urlopen(f"http://{peer.address}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ChildFailed(f"infinity not healthy after {timeout:.0f}s:\n{peer.tail()}")
            time.sleep(0.5)
        peer.ready.set()
    except BaseException:
        peer.terminate()
        raise
    return peer


def infinity_client(address: str, connections: int, timeout: float = 60.0) -> aiohttp.ClientSession:
    """An HTTP/1.1 client for one Infinity server: a keep-alive pool of up to `connections`
    (the most requests the bench keeps in flight), opened as needed and reused. Create it
    inside the event loop that uses it (`async with infinity_client(...) as client`)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=4.0)
    # (uvicorn closes idle connections after 5 s; we drop ours before that)
    return aiohttp.ClientSession(
        base_url=f"http://{address}",
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def infinity_embed(client: aiohttp.ClientSession, texts: Sequence[str]) -> np.ndarray:
    """One OpenAI-style /embeddings call (base64 float32 rows), as a (len(texts), dim) array."""
    body = {"model": INFINITY_MODEL_NAME, "input": list(texts), "encoding_format": "base64"}
    async with client.post("/embeddings", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:300]!r}")
        payload = await resp.json()
    rows = sorted(payload["data"], key=lambda d: d["index"])
    return np.stack([np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4") for r in rows])


def infinity_version(binary: Path) -> str:
    """`infinity-emb X torch Y` of the venv that holds `binary` (for the report's notes)."""
    import subprocess

    python = binary.parent / "python"
    code = (
        "import infinity_emb, torch; v = ['infinity-emb', infinity_emb.__version__, 'torch', "
        "torch.__version__]\ntry:\n import onnxruntime, optimum.version\n v += ['optimum', "
        "optimum.version.__version__, 'onnxruntime', onnxruntime.__version__]\n"
        "except Exception:\n pass\nprint(*v)"
    )
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                             timeout=120, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "infinity-emb (version unknown)"


def start_infinity_peers(
    engines: Sequence[str],
    infinity_bin: str | None,
    model_dir: Path,
    threads: int,
    scratch: Path,
    notes: list[str],
) -> list[tuple[str, Child]]:
    """Start Infinity on each engine asked for (`infinity_torch`, `infinity_onnx`), at once;
    returns (row name, server) for those that serve, in the order asked. What is not
    installed or fails to start is skipped with a line in `notes`. The caller stops them."""
    if not engines:
        return []
    binary = find_infinity(infinity_bin)
    if binary is None:
        notes.append(
            f"{', '.join(engines)} skipped: no {DEFAULT_INFINITY_VENV}/bin/infinity_emb "
            "(run scripts/install_infinity.sh or pass --infinity-bin)"
        )
        return []
    notes.append(f"infinity: {infinity_version(binary)} from {binary.parent.parent}")

    def start(name: str) -> tuple[Child | None, list[str]]:
        said: list[str] = []
        engine = INFINITY_ENGINES[name]
        peer_dir, pooling = model_dir, "auto"
        if engine == "optimum":
            pooling = read_st_config(model_dir).pooling_mode
            if pooling not in ("mean", "cls"):
                return None, [f"{name} skipped: its optimum engine pools by mean or cls only, "
                              f"the model by {pooling}"]  # fmt: skip
            try:
                onnx, max_tokens = onnx_export(model_dir)
            except Exception as exc:  # the onnx extra missing, or the export failing
                return None, [f"{name} skipped: no ONNX export ({str(exc).splitlines()[0]})"]
            peer_dir = infinity_model_dir(
                model_dir, onnx, scratch / f"{model_dir.name}-onnx", max_tokens
            )
        try:
            peer = start_infinity(binary, peer_dir, threads, engine=engine, pooling=pooling)
        except (RuntimeError, OSError) as exc:
            return None, [f"{name} failed to start: {str(exc).splitlines()[0]}"]
        how = "--engine torch --no-bettertransformer" if engine == "torch" else (
            f"--engine optimum --pooling-method {pooling} (ONNX Runtime CPU, its graph optimizer "
            "on; the fp32 ONNX export aegis-serve's onnx backend runs; config.json's "
            "max_position_embeddings cut to the tokens aegis-serve serves, where its optimum "
            "engine truncates)"
        )  # fmt: skip
        said.append(f"{name}: `infinity_emb v2 {how} --device cpu`, REST /embeddings (base64)")
        if "Optimization failed" in " ".join(peer.output.split()):
            said.append(f"{name}: infinity's graph optimization failed at start (see its log); "
                        "it runs the unoptimized graph")  # fmt: skip
        return peer, said

    with ThreadPoolExecutor(max_workers=len(engines), thread_name_prefix="infinity") as pool:
        results = list(pool.map(start, engines))
    started = []
    for name, (peer, said) in zip(engines, results, strict=True):
        notes.extend(said)
        if peer is not None:
            started.append((name, peer))
    return started


# ------------------------------------------------------------------ entry point
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegis_lab.bench.peers")
    sub = parser.add_subparsers(dest="peer", required=True)
    naive = sub.add_parser("naive-st", help="plain Sentence-Transformers gRPC server")
    naive.add_argument("--model", required=True, help="Sentence-Transformers model directory")
    naive.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    naive.add_argument("--workers", type=int, default=NAIVE_WORKERS, help="gRPC thread pool")
    naive.add_argument("--host", default="127.0.0.1")
    naive.add_argument("--port", type=int, default=0, help="0 = a free port")
    ns = parser.parse_args(argv)
    serve_naive_st(ns.model, ns.threads, ns.workers, ns.host, ns.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
