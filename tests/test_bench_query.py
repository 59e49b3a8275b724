"""`aegis-lab bench query` end to end with tiny settings (CPU, the student), its peers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from aegis_lab.bench import peers
from aegis_lab.bench.query import QueryBenchConfig, run_query_bench, turns

pytest.importorskip("sentence_transformers")

ROW_KEYS = {"system", "concurrency", "requests", "p50_ms", "p95_ms", "p99_ms", "queries_per_s"}


def _children() -> list[int]:
    """Processes (zombies included) whose parent is this test process."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry.name))
    return found


def _mentioning(needle: str) -> list[int]:
    """Processes whose command line mentions `needle` (catches orphaned grandchildren)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def model_link(tmp_path: Path, student_dir: Path) -> Path:
    """The student under a path unique to this test, so leftover servers are findable."""
    link = tmp_path / "student-model"
    link.symlink_to(student_dir, target_is_directory=True)
    return link


def test_naive_st_server_returns_the_models_vectors(model_link, student):
    import grpc

    from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc

    texts = ["what is photosynthesis", "history of jazz music", "tcp congestion for beginners"]
    with peers.start_naive_st(model_link, threads=1, workers=4) as server:

        async def encode(text: str) -> np.ndarray:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = encoder_pb2_grpc.EncoderServiceStub(channel)
                resp = await stub.Encode(encoder_pb2.EncodeRequest(texts=[text]), timeout=60)
            return np.frombuffer(resp.matrix, dtype="<f4").reshape(resp.rows, resp.cols)

        got = np.concatenate([asyncio.run(encode(t)) for t in texts])
    assert server.proc.returncode is not None
    want = student.embed(texts)
    assert got.shape == want.shape
    cos = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, cos


def test_infinity_client_keeps_connections_alive_against_an_embeddings_endpoint():
    """The Infinity driver (httpx, HTTP/1.1 keep-alive pool), against a stdlib stand-in for
    POST /embeddings that also closes idle connections (as uvicorn does after 5 s)."""
    seen: list[dict] = []
    connections: set[int] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 0.3  # closes idle keep-alive connections, like uvicorn (after 5 s)

        def do_POST(self):  # stdlib handler naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            connections.add(id(self.connection))
            data = [
                {"index": i, "embedding": base64.b64encode(
                    np.full(4, len(t), dtype="<f4").tobytes()).decode()}
                for i, t in enumerate(body["input"])
            ]  # fmt: skip
            out = json.dumps({"data": data[::-1]}).encode()  # out of order on purpose
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def run() -> list[np.ndarray]:
            address = f"127.0.0.1:{server.server_port}"
            async with peers.infinity_client(address, connections=3) as client:
                outs = [await peers.infinity_embed(client, ["ab", "abcd"]) for _ in range(5)]
                outs += await asyncio.gather(
                    *(peers.infinity_embed(client, ["x" * i]) for i in range(1, 4))
                )
                await asyncio.sleep(0.6)  # the server has closed the idle connections meanwhile
                outs.append(await peers.infinity_embed(client, ["abc"]))
                return outs

        outs = asyncio.run(run())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert outs[0].tolist() == [[2.0] * 4, [4.0] * 4]
    assert [o[0, 0] for o in outs[5:]] == [1.0, 2.0, 3.0, 3.0]
    assert seen[0] == {"model": peers.INFINITY_MODEL_NAME, "input": ["ab", "abcd"],
                       "encoding_format": "base64"}  # fmt: skip
    # Five sequential calls share one connection, three concurrent ones add at most two, and
    # the call after the server closed them all opens one more.
    assert len(connections) <= 4


def test_infinity_model_dir_holds_the_model_and_only_our_onnx_export(tmp_path, student_dir):
    onnx = tmp_path / "export" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"onnx")
    out = peers.infinity_model_dir(student_dir, onnx, tmp_path / "peer")
    assert (out / "model.onnx").resolve() == onnx.resolve()
    assert (out / "modules.json").read_text() == (student_dir / "modules.json").read_text()
    assert [p.name for p in out.rglob("*.onnx")] == ["model.onnx"]
    assert {p.name for p in student_dir.iterdir() if p.suffix != ".onnx" and p.name != "onnx"} | {
        "model.onnx"
    } == {p.name for p in out.iterdir()}


def test_infinity_model_dir_cuts_max_positions_to_the_served_tokens(tmp_path, student_dir):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    served = json.loads((student_dir / "config.json").read_text())
    assert served["max_position_embeddings"] > 128
    out = peers.infinity_model_dir(student_dir, onnx, tmp_path / "peer", max_tokens=128)
    config = json.loads((out / "config.json").read_text())
    assert not (out / "config.json").is_symlink()
    assert config == {**served, "max_position_embeddings": 128}
    # the real model directory is untouched, and a larger limit changes nothing
    assert json.loads((student_dir / "config.json").read_text()) == served
    again = peers.infinity_model_dir(student_dir, onnx, tmp_path / "peer2", max_tokens=100_000)
    assert json.loads((again / "config.json").read_text()) == served


def test_turns_keep_each_block_long_enough_for_its_concurrency():
    assert [turns(2000, c) for c in (1, 8, 64, 256)] == [10, 10, 3, 1]
    assert turns(5, 1) == 1 and turns(0, 8) == 1


def test_unknown_peer_is_refused_before_anything_starts(tmp_path):
    cfg = QueryBenchConfig(peers=["naive_st", "infinity_gpu"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown peers"):
        run_query_bench(cfg)
    assert QueryBenchConfig(peers=["infinity"]).peer_rows == ["infinity_torch", "infinity_onnx"]
    assert QueryBenchConfig(peers=["infinity_onnx", "naive_st"]).peer_rows == [
        "naive_st", "infinity_onnx"
    ]  # fmt: skip


def test_query_bench_with_naive_st_peer_writes_json_markdown_and_stops_everything(
    tmp_path, model_link, monkeypatch
):
    monkeypatch.setattr(peers, "DEFAULT_INFINITY_VENV", tmp_path / "no-infinity-venv")
    before = set(_children())
    cfg = QueryBenchConfig(
        model=str(model_link), threads=1, requests=20, concurrency=[1, 4], max_seconds=10,
        out_dir=tmp_path / "docs", command="test", progress=False,
        peers=["naive_st", "infinity"], naive_workers=4, split_procs=2, split_concurrency=4,
    )  # fmt: skip
    payload = run_query_bench(cfg)

    data = json.loads((tmp_path / "docs/results/query_path.json").read_text())
    assert data == json.loads(json.dumps(payload))
    assert {"machine", "date", "command", "rows", "ratios", "notes"} <= set(data)
    rows = data["rows"]
    assert all(set(r) >= ROW_KEYS for r in rows)
    assert all(r["errors"] == 0 and r["requests"] > 0 and r["queries_per_s"] > 0 for r in rows)
    systems = {(r["system"], r["concurrency"]) for r in rows}
    assert systems == {
        ("in_process", 1),
        ("in_process_batched", 1),
        ("grpc_floor", 1),
        ("gateway_2proc", 4),
    } | {(s, c) for s in ("encoder", "gateway", "gateway_embedded", "naive_st") for c in (1, 4)}
    batched = next(r for r in rows if r["system"] == "in_process_batched")
    assert batched["batch_size"] == 32 and batched["requests"] == 1  # 20 queries: one batch
    split = next(r for r in rows if r["system"] == "gateway_2proc")
    assert split["processes"] == 2 and split["threads_per_process"] == 1
    ratios = data["ratios"]
    assert ratios["throughput_concurrency"] == 4 and ratios["gateway_vs_infinity_qps"] is None
    assert ratios["infinity_engine_at_throughput"] is None
    for gw in ("gateway", "gateway_embedded"):
        assert ratios[f"{gw}_vs_naive_st_qps"] > 0 and ratios[f"{gw}_vs_in_process_batched_qps"] > 0
        assert isinstance(ratios[f"{gw}_p50_minus_in_process_p50_ms"], float)
    assert ratios["gateway_2proc_vs_gateway_qps"] > 0
    gateway_one = next(r for r in rows if r["system"] == "gateway" and r["concurrency"] == 1)
    assert 0 < ratios["grpc_floor_p50_ms"] < gateway_one["p50_ms"]
    # one in flight runs in alternating rounds: every system got all its requests
    singles = [r for r in rows if r["concurrency"] == 1 and r["system"] != "in_process_batched"]
    assert len(singles) == 6 and all(r["requests"] == 20 for r in singles)
    assert {r["rounds"] for r in singles if r["system"] != "in_process"} == {2}  # 20 // 8
    assert all(r["rounds"] == 1 for r in rows if r["concurrency"] == 4)  # 20 < 4 × 8
    assert ratios["gateway_embedded_vs_gateway_qps"] > 0
    assert any(n.startswith("infinity_torch, infinity_onnx skipped") for n in data["notes"])

    md = (tmp_path / "docs/benchmarks.md").read_text()
    assert md.count("<!-- section:query_path -->") == 1 and "## Query path" in md
    assert "gateway vs naive_st at 4 in flight" in md and "gateway ÷ naive_st" in md
    assert "gateway_embedded vs naive_st at 4 in flight" in md
    assert "gateway vs infinity at 4 in flight: not measured" in md
    assert "embedded vs remote query pool at 4 in flight" in md
    assert "one bare gRPC round trip" in md and "≤ 0.5 ms target" in md
    assert "infinity_onnx skipped" in md and "query pool split at 4 in flight" in md
    assert (tmp_path / "docs/results/query_path.png").stat().st_size > 10_000

    assert set(_children()) - before == set()
    assert _mentioning(str(tmp_path)) == []
