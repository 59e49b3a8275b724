"""A fleet of real aegis-serve processes on 127.0.0.1 that faults can be injected into.

One query encoder, N document encoders and two gateways (the second behind the client's
round robin for the gateway-restart scenario), each a `python -m aegis_serve.cli` child
supervised by `aegis_serve.supervisor.Child`. Encoders and the second gateway keep their port
across restarts, so a member killed by a scenario comes back at the address it was known by
(as a restarted pod would), and every scenario can start from a whole fleet. Memory is read
from /proc, so no extra dependency.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aegis_client import EmbedClient
from aegis_serve.supervisor import Child, serve_argv

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
        self.encoders: dict[str, Child] = {}
        self.gateway: Child | None = None
        self.gateway2: Child | None = None

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
            self.encoders[name] = Child(name, serve_argv(*self._encoder_args(role, 0)), self.env)
            self.encoders[name].start()
        for name, member in self.encoders.items():
            member.wait_ready(READY_TIMEOUT_S)
            port = int(member.address.rsplit(":", 1)[1])
            role = "query" if name == "query" else "document"
            member.argv = serve_argv(*self._encoder_args(role, port))  # restarts keep it
        self.gateway = Child("gateway", serve_argv(*self._gateway_args(0)), self.env)
        self.gateway2 = Child("gateway2", serve_argv(*self._gateway_args(0)), self.env)
        for gw in (self.gateway, self.gateway2):
            gw.start().wait_ready(READY_TIMEOUT_S)
        port = int(self.gateway2.address.rsplit(":", 1)[1])
        self.gateway2.argv = serve_argv(*self._gateway_args(port))  # restarts keep it
        self.wait_healthy()
        return self

    def _gateway_args(self, port: int) -> list[str]:
        docs = ",".join(m.address for n, m in self.encoders.items() if n != "query")
        return [
            "gateway", "--port", str(port), "--query", self.encoders["query"].address,
            "--document", docs, "--health-interval-s", str(self.cfg.health_interval_s),
            "--shutdown-grace-s", str(self.cfg.shutdown_grace_s), "--log-level", "WARNING",
        ]  # fmt: skip

    def close(self) -> None:
        members = [self.gateway, self.gateway2, *self.encoders.values()]
        for m in members:
            if m is not None:
                m.signal(signal.SIGTERM)
        for m in members:
            if m is not None and m.proc is not None and m.wait(15) is None:
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
    def both_gateways(self) -> str:
        """A target the client balances over both gateways (with round_robin)."""
        assert self.gateway is not None and self.gateway2 is not None
        return f"ipv4:{self.gateway.address},{self.gateway2.address}"

    @property
    def members(self) -> list[Child]:
        gateways = (self.gateway, self.gateway2)
        return [m for m in (*gateways, *self.encoders.values()) if m is not None]

    def restore(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Restart every dead encoder on its old port; wait until the gateway sees them all."""
        dead = [m for m in self.encoders.values() if not m.alive]
        if self.gateway2 is not None and not self.gateway2.alive:
            dead.append(self.gateway2)
        for m in dead:
            m.start()
        for m in dead:
            m.wait_ready(timeout)
        if self.gateway is None or not self.gateway.alive:
            tail = self.gateway.tail() if self.gateway else ""
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

    def __init__(self, fleet: Fleet, every_s: float = 0.1, series_every_s: float = 0.0) -> None:
        self.fleet = fleet
        self.every_s = every_s
        self.peak_mb: dict[str, float] = {}
        # (monotonic time, member, RSS MB) every `series_every_s` (0 = peaks only): the soak.
        self.series: list[tuple[float, str, float]] = []
        self.series_every_s = series_every_s
        self._next_series = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = time.monotonic()
        keep = self.series_every_s > 0 and now >= self._next_series
        if keep:
            self._next_series = now + self.series_every_s
        for m in self.fleet.members:
            if m.alive:
                mb = rss_mb(m.pid)
                self.peak_mb[m.name] = max(self.peak_mb.get(m.name, 0.0), mb)
                if keep:
                    self.series.append((now, m.name, mb))

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
