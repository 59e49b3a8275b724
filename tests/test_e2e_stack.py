"""End to end: `aegis-serve up` processes with the real default models.

The aligned student (query pool) and the teacher (document pool) are separate processes
behind the gateway; every student query must rank its own teacher document first.
"""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest
from pairs import PAIRS

from aegis_client import EmbedClient, InvalidInputError
from conftest import ROOT, ServiceProcess

pytestmark = pytest.mark.teacher


@pytest.fixture(scope="module")
def live_stack():
    """`aegis-serve up` on free ports; stopped with SIGTERM at the end."""
    proc = ServiceProcess(
        [
            "up",
            "--gateway-port",
            "0",
            "--query-port",
            "0",
            "--document-port",
            "0",
            "--shutdown-grace-s",
            "5",
            "--http-port",
            "0",
        ],
        ready_timeout=600,
        ready_marker="aegis-serve is up",
    )
    assert proc.proc.poll() is None, proc.output[-3000:]
    # The supervisor echoes its children's READY lines; the gateway's has the address.
    line = next(ln for ln in proc.lines if "READY gateway" in ln)
    address = line.split("address=")[1].split()[0]
    yield proc, address
    assert proc.terminate(timeout=120) == 0, proc.output[-3000:]
    assert "stopping: gateway first" in proc.output


def test_up_starts_quietly_on_one_screen(live_stack):
    """From "models ready" to "Ctrl-C": each process's one start line (what it loaded, where,
    how long) and its READY line, then the summary; no library warning walls or progress bars
    (the first run's model extraction, before "models ready", may show bars: it takes seconds).
    """
    proc, _ = live_stack
    lines = [ln.rstrip("\n") for ln in proc.lines]
    first = next(i for i, ln in enumerate(lines) if ln.startswith("models ready in "))
    last = next(i for i, ln in enumerate(lines) if ln.startswith("Ctrl-C stops everything"))
    start = [ln for ln in lines[first : last + 1] if ln.strip()]
    assert len(start) <= 16, "\n".join(start)
    text = "\n".join(start)
    for noise in ("Warning", "WARNING", "torchvision", "Loading weights", "Traceback", "it/s"):
        assert noise not in text, text
    for kind in ("query encoder ready in", "document encoder ready in", "gateway ready in"):
        (line,) = [ln for ln in start if kind in ln]
        assert " s: " in line and "listening on 127.0.0.1:" in line, line
    assert "serving space all-mpnet-base-v2/768" in text


def test_up_serves_the_openai_face_on_request(live_stack):
    """`up --http-port` passes the face to the gateway: one more start line, same vectors."""
    httpx = pytest.importorskip("httpx")
    proc, address = live_stack
    (line,) = [ln for ln in proc.lines if "OpenAI-compatible embeddings at" in ln]
    url = line.split(" at ")[1].split()[0]
    body = {"model": "aegis-query", "input": [PAIRS[0][0]], "dimensions": 256}
    got = httpx.post(url, json=body, timeout=60).json()["data"][0]["embedding"]
    with EmbedClient(address, timeout=60) as client:
        want = client.embed_queries([PAIRS[0][0]], dimensions=256)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_student_queries_rank_their_teacher_document_first(live_stack):
    _, address = live_stack
    queries = [q for q, _ in PAIRS]
    docs = [d for _, d in PAIRS]
    with EmbedClient(address, timeout=300) as client:
        info = client.info()
        assert info.serving, info.problem
        q_pool, d_pool = info.pools
        assert q_pool.model != d_pool.model and q_pool.space_id == d_pool.space_id
        d = client.embed(docs, "document")
        q = client.embed(queries, "query")
    assert (d.encoder, q.encoder) == ("document", "query") and not q.fallback
    assert d.model == d_pool.model and q.model == q_pool.model
    scores = q.embeddings @ d.embeddings.T
    ranks = [int((row > row[i]).sum()) for i, row in enumerate(scores)]
    assert ranks == [0] * len(PAIRS), list(zip(queries, ranks, strict=True))


def served_ranges(proc: ServiceProcess, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """int8/uint8 ranges the space ships for `dims` (document pool's GetInfo), else -1..+1."""
    from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc

    line = next(ln for ln in proc.lines if "READY encoder role=document" in ln)
    address = line.split("address=")[1].split()[0]
    with grpc.insecure_channel(address) as channel:
        info = encoder_pb2_grpc.EncoderServiceStub(channel).GetInfo(
            encoder_pb2.GetInfoRequest(), timeout=10
        )
    for cal in info.calibration:
        if cal.dimensions == dims:
            return np.asarray(cal.minimum), np.asarray(cal.maximum)
    return np.full(dims, -1.0), np.full(dims, 1.0)


@pytest.mark.parametrize("dims", [768, 256, 64])
def test_dims_and_encodings_decode_to_the_numpy_reference(live_stack, dims):
    _, address = live_stack
    texts = [d for _, d in PAIRS[:8]]
    with EmbedClient(address, timeout=300) as client:
        full = client.embed(texts, "document").embeddings
        ref = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
        got = {
            enc: client.embed(texts, "document", dimensions=dims, encoding=enc).embeddings
            for enc in ("float32", "float16", "int8", "uint8", "binary", "ubinary")
        }
        bits = client.embed(
            texts, "document", dimensions=dims, encoding="binary", unpack_bits=True
        ).embeddings
    np.testing.assert_allclose(got["float32"], ref, atol=1e-5)
    np.testing.assert_allclose(got["float16"].astype(np.float32), ref, atol=1e-3)
    lo, hi = served_ranges(live_stack[0], dims)
    steps = (hi - lo) / 255
    expected_u8 = np.clip(np.floor((ref - lo) / steps), 0, 255).astype(np.uint8)
    assert np.abs(got["uint8"].astype(int) - expected_u8.astype(int)).max() <= 1
    assert np.abs(got["int8"].astype(int) - (expected_u8.astype(int) - 128)).max() <= 1
    np.testing.assert_array_equal(got["ubinary"], np.packbits(ref > 0, axis=1))
    np.testing.assert_array_equal(bits, (ref > 0).astype(np.uint8))
    np.testing.assert_array_equal(got["binary"].view(np.uint8) ^ 0x80, got["ubinary"])


def test_cli_embed_and_grpc_errors_through_the_stack(live_stack):
    _, address = live_stack
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aegis_serve.cli",
            "embed",
            "--target",
            address,
            "--type",
            "query",
            "--dimensions",
            "64",
            "hello there",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    row = json.loads(out.stdout.splitlines()[0])
    assert row["text"] == "hello there" and len(row["embedding"]) == 64
    with EmbedClient(address, timeout=30) as client, pytest.raises(InvalidInputError) as err:
        client.embed(["x"], "query", dimensions=100)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
