"""Encoder service: dynamic batching correctness, load shedding, cancellation, drain."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from aegis_client import AsyncEmbedClient
from aegis_serve.encoder.batching import (
    Batcher,
    BatchFailed,
    DeadlineExpired,
    QueueFull,
    Slot,
    plan_batches,
)
from aegis_serve.models.embedder import TokenizedText


def mixed_texts(n: int) -> list[str]:
    rng = np.random.default_rng(7)
    words = "alpha beta gamma delta search vector index query document model token".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 220)))) for _ in range(n)]


def test_64_concurrent_mixed_requests_equal_single_requests(stack, student, student_dir):
    q = stack.encoder("q", student, "query", max_batch_tokens=4096)
    d = stack.encoder("d", student, "document", max_batch_tokens=4096)
    gw = stack.gateway([q], [d])
    texts = mixed_texts(64)
    reference = SentenceTransformer(str(student_dir), device="cpu").encode(texts)

    async def run() -> tuple[list[np.ndarray], list[np.ndarray]]:
        async with AsyncEmbedClient(f"127.0.0.1:{gw.port}", timeout=120) as client:
            alone = [(await client.embed([t], "document")).embeddings[0] for t in texts]
            together = await asyncio.gather(*(client.embed([t], "document") for t in texts))
            return alone, [r.embeddings[0] for r in together]

    alone, together = asyncio.run(run())
    stats = stack.encoders["d"][1].batcher.stats
    assert stats.batches < stats.texts  # requests really were merged into batches
    for i in range(64):
        assert float(alone[i] @ together[i]) >= 0.9999
        assert float(together[i] @ reference[i]) >= 0.9999
    assert stats.padded_tokens <= 1.5 * stats.real_tokens  # length sorting keeps padding low


def test_plan_batches_respects_the_padded_token_budget():
    job = object()
    lengths = [5, 300, 12, 7, 250, 9, 64, 64, 1000]
    slots = [Slot(job, i, n, i) for i, n in enumerate(lengths)]  # type: ignore[arg-type]
    batches = plan_batches(slots, max_batch_tokens=512, max_batch_texts=3)
    assert sorted(s.length for b in batches for s in b) == sorted(lengths)
    for batch in batches:
        widths = [s.length for s in batch]
        assert widths == sorted(widths) and len(batch) <= 3
        assert len(batch) == 1 or max(widths) * len(batch) <= 512
    assert [s.length for s in batches[-1]] == [1000]  # over-budget text runs alone


class SlowRunner:
    """Fake model: records what reached it, sleeps, can fail or run out of memory."""

    def __init__(self, delay: float = 0.05, oom_above: int | None = None) -> None:
        self.delay = delay
        self.oom_above = oom_above
        self.seen: list[list[int]] = []
        self.fail_marker: int | None = None

    def collate(self, items):
        return [it.ids[0] for it in items]

    def forward(self, batch, layers=0):
        time.sleep(self.delay)
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.fail_marker is not None and self.fail_marker in batch:
            raise RuntimeError("boom")
        self.seen.append(list(batch))
        return np.asarray([[float(i), 1.0] for i in batch], dtype=np.float32)


def items(*markers: int) -> list[TokenizedText]:
    return [
        TokenizedText(ids=[m, 0, 0], prompt_tokens=0, original_tokens=3, truncated=False)
        for m in markers
    ]


def test_cancelled_and_expired_requests_never_reach_the_model():
    async def run() -> SlowRunner:
        runner = SlowRunner(delay=0.2)
        batcher = Batcher(runner, 2, max_batch_tokens=3, max_batch_texts=1)
        batcher.start()
        first = asyncio.create_task(batcher.submit(items(1)))
        await asyncio.sleep(0.05)  # the model is busy with text 1
        cancelled = asyncio.create_task(batcher.submit(items(2, 3)))
        expiring = asyncio.create_task(
            batcher.submit(items(4), deadline=asyncio.get_running_loop().time() + 0.05)
        )
        kept = asyncio.create_task(batcher.submit(items(5)))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        assert (await first).rows[0, 0] == 1
        assert (await kept).rows[0, 0] == 5
        with pytest.raises(DeadlineExpired):
            await expiring
        assert batcher.stats.dropped_texts == 3
        await batcher.close()
        return runner

    runner = asyncio.run(run())
    reached = [m for batch in runner.seen for m in batch]
    assert reached == [1, 5]


def test_full_queue_sheds_load():
    async def run() -> None:
        batcher = Batcher(SlowRunner(delay=0.1), 2, max_queue_texts=4)
        batcher.start()
        ok = asyncio.create_task(batcher.submit(items(1, 2, 3)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="queue is full"):
            await batcher.submit(items(4, 5))
        await ok
        await batcher.submit(items(6, 7, 8, 9))  # capacity is back once drained
        await batcher.close()

    asyncio.run(run())


def test_out_of_memory_splits_the_batch_and_a_failure_stays_in_its_batch():
    async def run() -> None:
        runner = SlowRunner(delay=0.0, oom_above=2)
        batcher = Batcher(runner, 2, max_batch_tokens=10_000)
        batcher.start()
        job = await batcher.submit(items(*range(10, 18)))
        np.testing.assert_array_equal(job.rows[:, 0], np.arange(10, 18))
        assert batcher.stats.split_batches >= 3
        runner.oom_above, runner.fail_marker = None, 99
        runner.delay = 0.05
        blocker = asyncio.create_task(batcher.submit(items(1)))
        await asyncio.sleep(0.01)
        bad = asyncio.create_task(batcher.submit(items(99)))
        await blocker
        with pytest.raises(BatchFailed, match="boom"):
            await bad
        good = await batcher.submit(items(7))
        assert good.rows[0, 0] == 7
        await batcher.close()

    asyncio.run(run())


def test_queue_full_is_resource_exhausted_over_grpc(stack, student):
    address = stack.encoder(
        "d", student, "document", max_queue_texts=8, max_batch_tokens=300, max_batch_texts=1
    )
    stub = encoder_pb2_grpc.EncoderServiceStub(grpc.insecure_channel(address))
    long = ["token " * 250] * 8
    futures = [
        stub.Encode.future(encoder_pb2.EncodeRequest(texts=long), timeout=60) for _ in range(4)
    ]
    codes = []
    for f in futures:
        try:
            f.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "queue is full" in exc.details()
                # The standard pushback trailer, and the deprecated one with the same value.
                assert ("grpc-retry-pushback-ms", "100") in exc.trailing_metadata()
                assert ("retry-after-ms", "100") in exc.trailing_metadata()
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes


def test_encoder_info_and_bad_prompt(stack, student):
    address = stack.encoder("q", student, "query")
    stub = encoder_pb2_grpc.EncoderServiceStub(grpc.insecure_channel(address))
    info = stub.GetInfo(encoder_pb2.GetInfoRequest(), timeout=5)
    assert (info.role, info.dimensions, info.max_input_tokens) == ("query", 384, 256)
    assert info.device == "cpu" and info.dtype == "float32" and info.space_id
    with pytest.raises(grpc.RpcError) as err:
        stub.Encode(encoder_pb2.EncodeRequest(texts=["x"], prompt_name="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt_name 'nope'" in err.value.details()


def test_sigterm_drains_in_flight_requests(spawn, student_dir):
    proc = spawn(
        [
            "encoder",
            "--model",
            str(student_dir),
            "--role",
            "document",
            "--port",
            "0",
            "--shutdown-grace-s",
            "30",
            "--threads",
            "1",
            "--max-batch-tokens",
            "1024",
        ]
    )
    stub = encoder_pb2_grpc.EncoderServiceStub(grpc.insecure_channel(proc.address))
    texts = mixed_texts(48)
    futures = [
        stub.Encode.future(encoder_pb2.EncodeRequest(texts=texts[i::6]), timeout=120)
        for i in range(6)
    ]
    time.sleep(0.2)  # requests are in flight / queued
    proc.proc.send_signal(signal.SIGTERM)
    results = [f.result() for f in futures]  # every in-flight request completes
    assert all(r.rows == 8 and len(r.matrix) == 8 * 384 * 4 for r in results)
    assert proc.proc.wait(60) == 0
    assert "draining" in proc.output
    # New connections are refused once it is gone.
    with pytest.raises(grpc.RpcError):
        stub.Encode(encoder_pb2.EncodeRequest(texts=["late"]), timeout=2)


def test_tokenize_runs_off_the_event_loop_for_huge_inputs(stack, student):
    address = stack.encoder("d", student, "document")
    stub = encoder_pb2_grpc.EncoderServiceStub(grpc.insecure_channel(address))
    done = threading.Event()

    def big() -> None:
        stub.Encode(encoder_pb2.EncodeRequest(texts=["lorem ipsum " * 20000] * 4), timeout=60)
        done.set()

    threading.Thread(target=big).start()
    start = time.monotonic()
    stub.GetInfo(encoder_pb2.GetInfoRequest(), timeout=5)
    assert time.monotonic() - start < 2
    assert done.wait(60)
