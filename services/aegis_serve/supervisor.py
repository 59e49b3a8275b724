"""Start, watch and stop child processes that announce themselves with a READY line.

Every serving process prints one `READY <kind> address=… …` line (`protocol.ready_line`)
once it accepts RPCs. `Child` starts a process (by default `python -m aegis_serve.cli …`),
reads its output on a thread (echoing it with a name prefix if asked, keeping a tail for
error messages), parses the READY line's fields, and stops it: SIGTERM (to its whole
process group when it leads one), then SIGKILL after a grace period. `aegis-serve up`, the
lab's benchmarks and fault suite, and the tests all supervise processes with it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from aegis_serve.protocol import parse_ready

__all__ = ["Child", "ChildFailed", "serve_argv", "stop_all", "wait_all_ready"]


class ChildFailed(RuntimeError):
    """A child exited, or did not get ready in time; the message carries its last lines."""


def serve_argv(*args: str) -> list[str]:
    """`python -m aegis_serve.cli ARGS` with this interpreter."""
    return [sys.executable, "-m", "aegis_serve.cli", *args]


class Child:
    """One supervised process: its READY fields, the tail of its output, its fate."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        echo: bool = False,
        new_session: bool = True,
        cwd: Path | str | None = None,
        keep_lines: int | None = 200,
        ready_marker: str = "",
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.echo = echo
        self.new_session = new_session  # our Ctrl-C is not theirs; we stop them in order
        self.cwd = cwd
        self.ready_marker = ready_marker  # a line other than READY that means ready
        self.lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.ready = threading.Event()
        self.fields: dict[str, str] = {}
        self.line = ""
        self.proc: subprocess.Popen[str] | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Child:
        """Start (or restart) the process; returns at once (see `wait_ready`)."""
        self.ready.clear()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=self.new_session,
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            # Echo before marking ready: whoever waits on `ready` prints next, and a
            # reader of our combined output must find the READY line before that.
            if self.echo:
                sys.stdout.write(f"[{self.name}] {line}")
                sys.stdout.flush()
            if not self.ready.is_set():
                fields = parse_ready(line)
                if fields is not None:
                    self.fields, self.line = fields, line.strip()
                if (fields is not None and not self.ready_marker) or (
                    self.ready_marker and self.ready_marker in line
                ):
                    self.ready.set()

    def wait_ready(self, timeout: float) -> Child:
        """Block until READY; on exit or timeout, kill it and raise ChildFailed."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self.alive:
                raise ChildFailed(f"{self.name} exited with code {self.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ChildFailed(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")
        return self

    # ------------------------------------------------------------ state
    @property
    def address(self) -> str:
        return self.fields.get("address", "")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def tail(self, n: int = 40) -> str:
        return "".join(list(self.lines)[-n:])

    # ------------------------------------------------------------ stopping
    def signal(self, sig: int, group: bool = False) -> None:
        """Send `sig` to the process (or to its process group, which it leads)."""
        if not self.alive:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group and self.new_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it still runs after `timeout` seconds; the exit code."""
        self.signal(signal.SIGTERM, group=True)
        if self.wait(timeout) is None:
            self.kill()
        return self.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL, group=True)
        self.wait(30)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def wait_all_ready(children: Iterable[Child], timeout: float) -> None:
    """Wait for every child's READY within one shared `timeout`."""
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait_ready(max(0.1, deadline - time.monotonic()))


def stop_all(children: Iterable[Child], grace: float) -> None:
    """Stop in the order given (the gateway first, so it stops taking requests first)."""
    for child in children:
        if child.alive:
            child.terminate(grace + 10)
