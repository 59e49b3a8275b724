"""A bad network between the gateway and a pool replica, in a network namespace the test makes.

One document replica runs inside a fresh namespace, reached over a veth pair with test-only
addresses (10.213.0.0/30); a gateway of its own balances documents over it and one of the
fleet's replicas. Faults, each under load and bounded in time:

- a 10-second partition (the veth link down, then up again);
- 50 ms delay, then 1 % and 10 % packet loss (`tc netem`), when the kernel has netem.

Every request must succeed or fail with a defined status inside its deadline, and no answer
may carry a wrong vector. Needs root and `ip`; where the kernel refuses namespaces the
scenario is skipped with the reason, and netem cases are skipped (said in the report) where
the kernel has no netem qdisc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from aegis_serve.supervisor import Child, serve_argv

NS_ADDR, HOST_ADDR, PREFIX = "10.213.0.2", "10.213.0.1", 30


class NetworkUnavailable(RuntimeError):
    """This machine cannot make the namespace (not root, no `ip`, kernel refuses)."""


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise NetworkUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


@dataclass
class Link:
    """The namespace and the host side of its veth pair."""

    ns: str
    host_if: str

    def down(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def up(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def netem(self, *spec: str) -> str:
        """Apply `tc qdisc ... netem SPEC` on the host side; '' or the kernel's refusal."""
        done = subprocess.run(
            ["tc", "qdisc", "replace", "dev", self.host_if, "root", "netem", *spec],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return "" if done.returncode == 0 else (done.stderr.strip() or "tc netem failed")

    def clear(self) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", self.host_if, "root"], capture_output=True,
                       timeout=10)  # fmt: skip


@contextlib.contextmanager
def namespace() -> Iterator[Link]:
    """A namespace with a veth pair to the host; removed (with anything left in it) after."""
    if os.geteuid() != 0:
        raise NetworkUnavailable("needs root to create a network namespace")
    if shutil.which("ip") is None:
        raise NetworkUnavailable("the `ip` command (iproute2) is not installed")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"aegis-chaos-{tag}", f"aegv{tag}", f"aegn{tag}"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{NS_ADDR}/{PREFIX}", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        yield Link(ns, host_if)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "pids", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def encoder_in(link: Link, encoder_args: list[str], env: dict[str, str]) -> Child:
    """A document encoder process inside the namespace, listening on its veth address."""
    argv = ["ip", "netns", "exec", link.ns, *serve_argv(*encoder_args, "--host", NS_ADDR)]
    return Child("document-netns", argv, env)
