"""A fleet of real aegis-serve processes on 127.0.0.1 that faults can be injected into.

One query encoder, N document encoders and a gateway, each a `python -m aegis_serve.cli`
child. Encoders keep their port across restarts, so a replica killed by a scenario comes
back at the address the gateway was configured with (as a restarted pod would), and every
scenario can start from a whole fleet. Memory is read from /proc, so no extra dependency.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aegis_client import EmbedClient

READY_TIMEOUT_S = 180.0


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory of a live process in MiB (VmRSS now, VmHWM = peak); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


@dataclass
class Member:
    """One process of the fleet: how to (re)start it and what it printed."""

    name: str
    args: list[str]
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=60))
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, env: dict[str, str]) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aegis_serve.cli", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # our Ctrl-C is not theirs; faults are sent explicitly
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.tail.append(line)
            if line.startswith("READY ") and not self.ready.is_set():
                for part in line.split():
                    if part.startswith("address="):
                        self.address = part.split("=", 1)[1]
                self.ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self.alive or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.tail))

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(30)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@dataclass
class FleetConfig:
    """Shape of the fleet. Both pools serve one model dir (same space, same vectors)."""

    model_dir: Path
    documents: int = 2
    threads: int = 1
    max_queue_texts: int = 64
    shutdown_grace_s: float = 10.0
    health_interval_s: float = 0.5


class Fleet:
    """Start, fault and restore the processes; sample their memory."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.encoders: dict[str, Member] = {}
        self.gateway: Member | None = None

    # ------------------------------------------------------------ lifecycle
    def _encoder_args(self, role: str, port: int) -> list[str]:
        c = self.cfg
        return [
            "encoder", "--role", role, "--model", str(c.model_dir), "--port", str(port),
            "--threads", str(c.threads), "--max-queue-texts", str(c.max_queue_texts),
            "--shutdown-grace-s", str(c.shutdown_grace_s), "--log-level", "WARNING",
        ]  # fmt: skip

    def start(self) -> Fleet:
        names = ["query"] + [f"document{i}" for i in range(1, self.cfg.documents + 1)]
        for name in names:
            role = "query" if name == "query" else "document"
            self.encoders[name] = Member(name, self._encoder_args(role, 0))
            self.encoders[name].start(self.env)
        for member in self.encoders.values():
            member.wait_ready()
            port = member.address.rsplit(":", 1)[1]
            member.args = self._encoder_args(member.args[2], int(port))  # restarts keep it
        docs = ",".join(m.address for n, m in self.encoders.items() if n != "query")
        self.gateway = Member(
            "gateway",
            [
                "gateway", "--port", "0", "--query", self.encoders["query"].address,
                "--document", docs, "--health-interval-s", str(self.cfg.health_interval_s),
                "--shutdown-grace-s", str(self.cfg.shutdown_grace_s), "--log-level", "WARNING",
            ],
        )  # fmt: skip
        self.gateway.start(self.env)
        self.gateway.wait_ready()
        self.wait_healthy()
        return self

    def close(self) -> None:
        members = [self.gateway, *self.encoders.values()]
        for m in members:
            if m is not None:
                m.signal(signal.SIGTERM)
        for m in members:
            if m is not None and m.proc is not None and m.wait_exit(15) is None:
                m.kill()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        assert self.gateway is not None
        return self.gateway.address

    @property
    def members(self) -> list[Member]:
        return [m for m in (self.gateway, *self.encoders.values()) if m is not None]

    def restore(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Restart every dead encoder on its old port; wait until the gateway sees them all."""
        dead = [m for m in self.encoders.values() if not m.alive]
        for m in dead:
            m.start(self.env)
        for m in dead:
            m.wait_ready(timeout)
        if self.gateway is None or not self.gateway.alive:
            tail = "".join(self.gateway.tail) if self.gateway else ""
            raise RuntimeError("the gateway died:\n" + tail)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until GetInfo shows every configured replica healthy."""
        deadline = time.monotonic() + timeout
        with EmbedClient(self.address, timeout=5) as client:
            while True:
                info = client.info()
                if all(p.healthy_replicas == len(p.replicas) for p in info.pools):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fleet not healthy after {timeout:.0f}s: {info.pools}")
                time.sleep(0.1)

    def crashed(self) -> list[str]:
        """Members that died without being told to (call before injecting faults)."""
        return [m.name for m in self.members if not m.alive]


class MemorySampler:
    """Background thread recording each member's largest VmRSS while a scenario runs."""

    def __init__(self, fleet: Fleet, every_s: float = 0.1) -> None:
        self.fleet = fleet
        self.every_s = every_s
        self.peak_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for m in self.fleet.members:
            if m.alive:
                self.peak_mb[m.name] = max(self.peak_mb.get(m.name, 0.0), rss_mb(m.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    @property
    def max_mb(self) -> float:
        return max(self.peak_mb.values(), default=0.0)
