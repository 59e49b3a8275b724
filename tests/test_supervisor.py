"""The process supervisor: READY parsing and the order of echoed output."""

from __future__ import annotations

import io
import sys
import time

import pytest

from aegis_serve.supervisor import Child, ChildFailed


def _child(code: str, **kw: object) -> Child:
    return Child("probe", [sys.executable, "-c", code], **kw)  # type: ignore[arg-type]


class _SlowStdout(io.StringIO):
    """A terminal that takes its time: makes a ready-before-echo ordering visible."""

    def write(self, text: str) -> int:
        time.sleep(0.3)
        return super().write(text)


def test_echoed_ready_line_is_written_before_ready_is_signalled(monkeypatch) -> None:
    # `up` prints "aegis-serve is up" the moment every child is ready; a reader of its
    # output (the e2e test, a person) must already have seen the echoed READY lines.
    out = _SlowStdout()
    monkeypatch.setattr(sys, "stdout", out)
    code = (
        "import time; print('READY gateway address=127.0.0.1:1 pid=1', flush=True); time.sleep(30)"
    )
    child = _child(code, echo=True).start()
    try:
        child.wait_ready(60)
        assert "[probe] READY gateway address=127.0.0.1:1" in out.getvalue()
        assert child.address == "127.0.0.1:1"
    finally:
        child.kill()


def test_exit_before_ready_raises_with_the_tail() -> None:
    child = _child("print('boom: bad flag'); raise SystemExit(3)").start()
    with pytest.raises(ChildFailed, match="boom: bad flag"):
        child.wait_ready(60)
    assert child.returncode == 3
