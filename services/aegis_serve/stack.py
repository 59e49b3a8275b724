"""`aegis-serve up`: the whole local stack (query pool, document pool, gateway) as processes.

Models are prepared once in this process (with progress bars), then three child
processes are started and supervised: each prints a READY line when it serves; Ctrl-C
or SIGTERM drains the gateway first, then the pools; if any child dies, all stop.
With `--query-mode embedded` there are two: the query model runs inside the gateway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from aegis_serve.models.resolve import resolve_model
from aegis_serve.settings import EMBEDDED, Backend, CommonSettings, resolve_backend
from aegis_serve.supervisor import Child, ChildFailed, serve_argv, stop_all, wait_all_ready


class StackSettings(CommonSettings):
    """The local stack: three processes on one machine."""

    gateway_port: int = Field(50051, ge=0, le=65535, description="the public gateway's port")
    query_port: int = Field(50061, ge=0, le=65535, description="the query pool's port")
    http_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="the gateway's OpenAI-compatible POST /v1/embeddings port (http extra); "
        "off when unset",
    )
    query_mode: Literal["remote", "embedded"] = Field(
        "remote",
        description="remote = a query pool process of its own; embedded = the query model runs "
        "inside the gateway (no network hop; --query-port unused)",
    )
    document_port: int = Field(50062, ge=0, le=65535, description="the document pool's port")
    query_model: str = Field(
        "builtin:query",
        description="query pool model: a directory, builtin:query (the default student), "
        "builtin:query-linear, builtin:query-exit2 or builtin:query-leaf",
    )
    document_model: str = Field(
        "builtin:document", description="document pool model: a directory or builtin:document"
    )
    document_device: str = Field("auto", description="auto = cuda when available, else cpu")
    query_threads: int = Field(0, ge=0, description="0 = half the cores")
    query_backend: Literal["auto"] | Backend = Field(
        "auto", description="auto = onnx (same vectors, faster) when the onnx extra is installed"
    )
    document_threads: int = Field(0, ge=0, description="0 = the other half")
    ready_timeout_s: float = Field(
        600.0, gt=0, description="seconds each process may take to load and serve"
    )


def auto_threads(settings: StackSettings) -> tuple[int, int]:
    cores = os.cpu_count() or 2
    q = settings.query_threads or max(1, cores // 2)
    d = settings.document_threads or max(1, cores - q)
    return q, d


def document_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


METRICS_OFFSET = {"gateway": 0, "query": 1, "document": 2}


def metrics_args(name: str, settings: StackSettings) -> list[str]:
    """`--metrics-port N` for the stack gives the gateway N, the pools N+1 and N+2."""
    if not settings.metrics_port:
        return []
    return ["--metrics-port", str(settings.metrics_port + METRICS_OFFSET[name])]


def common_args(name: str, settings: StackSettings) -> list[str]:
    args = ["--host", settings.host, "--shutdown-grace-s", str(settings.shutdown_grace_s)]
    if settings.log_json:
        args.append("--log-json")
    return args + metrics_args(name, settings)


def encoder_args(
    role: str, model: Path, port: int, threads: int, device: str, settings: StackSettings
) -> list[str]:
    return [
        "encoder", "--role", role, "--model", str(model), "--port", str(port),
        "--threads", str(threads), "--device", device, *common_args(role, settings),
    ]  # fmt: skip


def _metrics_lines(children: list[Child]) -> str:
    return "".join(
        f"  metrics        http://{c.fields['metrics']}/metrics ({c.name})\n"
        for c in children
        if c.fields.get("metrics", "off") != "off"
    )


def run_stack(settings: StackSettings, on_ready: list[str] | None = None) -> int:
    """Start everything, print endpoints, block until a signal; return an exit code.

    `on_ready`: a command run once the stack serves, with `--target <gateway>` appended."""
    started = time.monotonic()  # the first run extracts and assembles models (progress bars)
    query_model = resolve_model(settings.query_model)
    document_model = resolve_model(settings.document_model)
    print(f"models ready in {time.monotonic() - started:.1f} s; starting the pools and the gateway")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    q_threads, d_threads = auto_threads(settings)
    device = document_device(settings.document_device)
    backend = resolve_backend(settings.query_backend)
    embedded = settings.query_mode == "embedded"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    document = Child("document", serve_argv(*encoder_args("document", document_model,
                                                          settings.document_port, d_threads,
                                                          device, settings)),
                     env, echo=True)  # fmt: skip
    if embedded:
        pools = [document.start()]
    else:
        query = Child("query", serve_argv(*encoder_args("query", query_model, settings.query_port,
                                                        q_threads, "cpu", settings),
                                          "--backend", backend), env, echo=True)  # fmt: skip
        pools = [query.start(), document.start()]
    children = list(pools)
    try:
        wait_all_ready(pools, settings.ready_timeout_s)
        query_args = (
            ["--query", EMBEDDED, "--query-model", str(query_model), "--query-backend", backend,
             "--query-threads", str(q_threads)]
            if embedded
            else ["--query", pools[0].address]
        )  # fmt: skip
        http = settings.http_port
        http_args = ["--http-port", str(http)] if http is not None else []
        gateway = Child(
            "gateway",
            serve_argv(
                "gateway", "--port", str(settings.gateway_port), *query_args,
                "--document", document.address, *common_args("gateway", settings),
                *http_args,
            ),
            env,
            echo=True,
        ).start()  # fmt: skip
        children.insert(0, gateway)
        gateway.wait_ready(settings.ready_timeout_s)
    except (ChildFailed, KeyboardInterrupt) as exc:
        print(f"stack failed to start: {exc}", file=sys.stderr)
        stop_all(children, settings.shutdown_grace_s)
        return 1
    query_line = (
        f"  query pool     embedded in the gateway   {query_model} ({backend})\n"
        if embedded
        else f"  query pool     {pools[0].address}   {query_model} ({backend})\n"
    )
    print(
        "\naegis-serve is up:\n"
        f"  gateway        {gateway.address}   (aegis.embed.v1.EmbedService, health, reflection)\n"
        f"{query_line}"
        + (
            f"  OpenAI face    {'https' if settings.tls_cert else 'http'}://{settings.host}:"
            f"{settings.http_port}/v1/embeddings\n"
            if settings.http_port
            else ""
        )
        + f"  document pool  {document.address}   {document_model} on {device}\n"
        f"{_metrics_lines(children)}"
        f"try: aegis-serve embed --target {gateway.address} --type query 'what is a cat?'\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    if on_ready:
        subprocess.run([*on_ready, "--target", gateway.address], env=env, check=False)
    code = 0
    while not stop.wait(0.5):
        dead = [c for c in children if not c.alive]
        if dead:
            print(f"{dead[0].name} exited ({dead[0].returncode}); stopping", file=sys.stderr)
            code = 1
            break
    print("stopping: gateway first, then the pools...", flush=True)
    stop_all(children, settings.shutdown_grace_s)
    return code
