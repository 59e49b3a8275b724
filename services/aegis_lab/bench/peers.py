"""The peers `bench query` compares against, run on the same model directory and cores.

`naive_st` is what a user would otherwise write: ``SentenceTransformer(model_dir)`` and one
``model.encode([text])`` per request behind a small server, no batching. It speaks our own
``aegis.encoder.v1.EncoderService/Encode`` over gRPC (a sync ``grpc.server`` with the
helloworld example's ``ThreadPoolExecutor(max_workers=10)``), so the bench drives it with
the same grpc.aio client as the encoder row and only the serving side differs. A lock keeps
one ``encode`` at a time: a shared fast tokenizer raises "Already borrowed" under concurrent
calls, and parallel forwards would only oversubscribe the same cores.

`infinity` is infinity-emb (``infinity_emb v2``, torch engine, CPU) from its own venv
(scripts/install_infinity.sh), driven over REST ``POST /embeddings`` with base64 float32
vectors through a small asyncio HTTP/1.1 keep-alive client (one connection per request in
flight, reused), so per-request client work stays close to the gRPC client's.

Every server is a subprocess in its own session on 127.0.0.1 with a free port
(`aegis_serve.supervisor.Child`), stopped (SIGTERM to its process group, then SIGKILL) by
whoever started it.
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path

import numpy as np

from aegis_serve.supervisor import Child, ChildFailed

DEFAULT_INFINITY_VENV = Path("/tmp/infinity-venv")
INFINITY_MODEL_NAME = "peer"  # --served-model-name: the "model" field of each request
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


def start_infinity(
    infinity_bin: Path,
    model_dir: Path,
    threads: int,
    *,
    timeout: float = 300.0,
) -> Child:
    """`infinity_emb v2` on 127.0.0.1 (CPU, torch engine, its own venv); returns once healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(HF_HUB_OFFLINE="1", DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0",
               TOKENIZERS_PARALLELISM="false")  # fmt: skip
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [str(infinity_bin), "v2", "--model-id", str(model_dir),
           "--served-model-name", INFINITY_MODEL_NAME, "--device", "cpu", "--engine", "torch",
           "--no-bettertransformer", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    # (--log-level warning: no uvicorn access-log line per request, Infinity at its best)
    peer = Child("infinity", cmd, env).start()
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


class HttpClient:
    """Minimal asyncio HTTP/1.1 keep-alive client: POST JSON, read a Content-Length or chunked
    body. Idle connections are reused LIFO, so there is about one per request in flight.

    Like other keep-alive clients it does not reuse a connection idle for longer than the
    server likely keeps it (uvicorn closes after 5 s), and retries once on a fresh one when
    a reused connection turns out closed before any response byte came back.
    """

    IDLE_REUSE_S = 4.0

    def __init__(self, address: str, timeout: float = 60.0) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.IDLE_REUSE_S and not reader.at_eof():
                return reader, writer, True
            self._close(writer)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer, False

    async def post_json(self, path: str, payload: object) -> object:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while True:
            reader, writer, reused = await self._connection()
            try:
                writer.write(request)
                status, data, keep = await asyncio.wait_for(self._response(reader), self.timeout)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._close(writer)
                started = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                if reused and not started:
                    continue  # the server had closed it while idle: once more, fresh
                raise
            except BaseException:
                self._close(writer)
                raise
            break
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            self._close(writer)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, data, headers.get("connection", "").lower() != "close"

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        self._idle.clear()
        for writer in list(self._open):
            self._close(writer)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def infinity_embed(client: HttpClient, texts: Sequence[str]) -> np.ndarray:
    """One OpenAI-style /embeddings call (base64 float32 rows), as a (len(texts), dim) array."""
    out = await client.post_json(
        "/embeddings",
        {"model": INFINITY_MODEL_NAME, "input": list(texts), "encoding_format": "base64"},
    )
    rows = sorted(out["data"], key=lambda d: d["index"])  # type: ignore[index]
    return np.stack([np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4") for r in rows])


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
