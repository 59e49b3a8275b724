"""Coalescing small Encode calls to a remote query replica (gateway/coalesce.py).

The policy is checked against a gated `send` (what would be one RPC), so the tests choose
when calls return; the last test runs it end to end: a real gateway over a real encoder on
127.0.0.1, many queries in flight, each answer identical to the query sent alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest

from aegis.encoder.v1 import encoder_pb2
from aegis_client import EmbedClient
from aegis_serve.common.errors import ServiceError
from aegis_serve.encoder.result import Encoded
from aegis_serve.gateway.coalesce import Coalescer
from aegis_serve.gateway.pools import RemoteReplica
from aegis_serve.protocol import REQUEST_TOKENS_KEY


class GatedSend:
    """Stands in for one Encode RPC: records each call and answers when the test opens it.
    Row i of an answer is [hash of text i, call number], so rows can be traced back."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, float, tuple[tuple[str, str], ...]]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_with: Exception | None = None
        self.cancelled = 0

    async def __call__(
        self, request: encoder_pb2.EncodeRequest, timeout: float, metadata: Sequence
    ) -> Encoded:
        number = len(self.calls)
        self.calls.append((list(request.texts), request.prompt_name, timeout, tuple(metadata)))
        gate = asyncio.Event()
        self.gates.append(gate)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail_with is not None:
            raise self.fail_with
        rows = np.array([[float(len(t)), float(number)] for t in request.texts], np.float32)
        return Encoded(rows, [len(t) for t in request.texts], 1, 2, 3, "m", 0)

    def open(self, number: int) -> None:
        self.gates[number].set()


def req(*texts: str, prompt: str = "", reject: bool = False) -> encoder_pb2.EncodeRequest:
    return encoder_pb2.EncodeRequest(texts=texts, prompt_name=prompt, reject_overlong=reject)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def one_slot_taken(
    *waiting: str,
) -> tuple[GatedSend, Coalescer, asyncio.Task[Encoded], list[asyncio.Task[Encoded]]]:
    """A coalescer whose one slot call 0 ("a") holds, with `waiting` queued behind it."""
    send = GatedSend()
    co = Coalescer(send, max_calls=1)
    busy = asyncio.create_task(co.encode(req("a"), 5.0, []))
    await settle()
    queued = [asyncio.create_task(co.encode(req(t), 5.0, [])) for t in waiting]
    await settle()
    return send, co, busy, queued


def test_a_lone_request_is_sent_at_once_and_unchanged() -> None:
    async def run() -> None:
        send = GatedSend()
        co = Coalescer(send, max_calls=2)
        task = asyncio.create_task(co.encode(req("abc"), 5.0, [("x-request-id", "r1")]))
        await settle()
        assert send.calls == [(["abc"], "", 5.0, (("x-request-id", "r1"),))]
        send.open(0)
        got = await task
        assert got.matrix.tolist() == [[3.0, 0.0]] and co.stats.coalesced_calls == 0

    asyncio.run(run())


def test_requests_waiting_for_a_slot_leave_together_and_get_their_own_rows() -> None:
    async def run() -> None:
        send = GatedSend()
        co = Coalescer(send, max_calls=1)
        first = asyncio.create_task(co.encode(req("a"), 5.0, [("x-request-id", "1")]))
        await settle()
        waiting = [
            asyncio.create_task(co.encode(req(*texts), 5.0, [("x-request-id", str(i))]))
            for i, texts in enumerate([("bb", "ccc"), ("dddd",), ("eeeee",)], start=2)
        ]
        await settle()
        assert len(send.calls) == 1  # the slot is taken: they wait
        send.open(0)
        assert (await first).matrix.tolist() == [[1.0, 0.0]]
        await settle()
        texts, _, _, metadata = send.calls[1]
        assert texts == ["bb", "ccc", "dddd", "eeeee"] and metadata == (("x-request-id", "2"),)
        send.open(1)
        answers = [await t for t in waiting]
        assert [a.matrix.tolist() for a in answers] == [
            [[2.0, 1.0], [3.0, 1.0]], [[4.0, 1.0]], [[5.0, 1.0]]
        ]  # fmt: skip
        assert [list(a.token_counts) for a in answers] == [[2, 3], [4], [5]]
        assert co.stats.calls == 2 and co.stats.coalesced_calls == 1 and co.stats.requests == 4

    asyncio.run(run())


def test_a_waiting_members_attempt_span_says_how_many_shared_its_call() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")  # not installed globally

    async def traced(co: Coalescer, text: str) -> Any:
        with trace.use_span(tracer.start_span(f"attempt {text}"), end_on_exit=True) as span:
            await co.encode(req(text), 5.0, [])
            return span

    async def run() -> None:
        send = GatedSend()
        co = Coalescer(send, max_calls=1)
        first = asyncio.create_task(traced(co, "a"))
        await settle()
        waiting = [asyncio.create_task(traced(co, t)) for t in ("b", "c", "d")]
        await settle()
        send.open(0)
        await settle()
        send.open(1)
        spans = [await t for t in waiting]
        assert [s.attributes["aegis.coalesced_requests"] for s in spans] == [3, 3, 3]
        assert "aegis.coalesced_requests" not in (await first).attributes  # sent at once

    asyncio.run(run())


def test_only_requests_with_the_same_answer_either_way_share_a_call() -> None:
    async def run() -> None:
        send = GatedSend()
        co = Coalescer(send, max_calls=1, max_texts=4)
        busy = asyncio.create_task(co.encode(req("a"), 5.0, []))
        await settle()
        tasks = [
            asyncio.create_task(co.encode(r, 5.0, md))
            for r, md in [
                (req("q1"), []),
                (req("p1", prompt="other"), []),  # another prompt: another call
                (req("q2", "q3"), []),
                (req("q4", "q5"), []),  # over max_texts with q1..q3: the next call
                (req("r1", reject=True), []),  # judged per call by the encoder: alone, now
                (req("t1"), [(REQUEST_TOKENS_KEY, "10")]),  # a per-request budget: alone, now
            ]
        ]
        await settle()
        assert [c[0] for c in send.calls] == [["a"], ["r1"], ["t1"]]
        send.open(0)
        await busy
        for number in range(3, 6):
            await settle()
            send.open(number)
        send.open(1)
        send.open(2)
        await asyncio.gather(*tasks)
        assert [c[0] for c in send.calls[3:]] == [["q1", "q2", "q3"], ["p1"], ["q4", "q5"]]
        assert send.calls[4][1] == "other"

    asyncio.run(run())


def test_a_failed_call_fails_each_member_with_its_status() -> None:
    async def run() -> None:
        send, _, busy, members = await one_slot_taken("b", "c")
        send.open(0)
        await busy
        await settle()
        send.fail_with = ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", (("retry-after-ms", "50"),)
        )
        send.open(1)
        errors = await asyncio.gather(*members, return_exceptions=True)
        assert all(isinstance(e, ServiceError) for e in errors) and errors[0] is not errors[1]
        assert {(e.code, e.message, e.trailers) for e in errors} == {
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", (("retry-after-ms", "50"),))
        }

    asyncio.run(run())


def test_deadlines_and_cancellation_of_waiting_members() -> None:
    async def run() -> None:
        send, co, busy, _ = await one_slot_taken()
        late = asyncio.create_task(co.encode(req("late"), 0.05, []))
        gone = asyncio.create_task(co.encode(req("gone"), 5.0, []))
        await settle()
        gone.cancel()
        with pytest.raises(ServiceError) as err:
            await late
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        send.open(0)
        await busy
        await settle()
        assert len(send.calls) == 1  # neither the expired nor the cancelled one was sent
        # Every member of a call in flight cancelled: the call is cancelled too.
        co2_send, co2, blocker, members = await one_slot_taken("y", "z")
        co2_send.open(0)
        await blocker
        await settle()
        assert co2_send.calls[1][0] == ["y", "z"]
        for m in members:
            m.cancel()
        await settle()
        assert co2_send.cancelled == 1 and co2._in_flight == 0

    asyncio.run(run())


def test_an_ejected_replica_fails_what_waits_instead_of_sending_it_there() -> None:
    async def run() -> None:
        send, co, busy, waiting = await one_slot_taken("b", "c")
        assert co.fail_waiting(ServiceError(grpc.StatusCode.UNAVAILABLE, "ejected")) == 2
        for task in waiting:
            with pytest.raises(ServiceError, match="ejected"):
                await task
        send.open(0)
        await busy
        await settle()
        assert len(send.calls) == 1  # nothing more went to the ejected replica

    asyncio.run(run())


def test_close_fails_what_waits() -> None:
    async def run() -> None:
        _, co, busy, (waiting,) = await one_slot_taken("b")
        await co.close()
        with pytest.raises(ServiceError, match="shutting down"):
            await waiting
        busy.cancel()

    asyncio.run(run())


def test_gateway_coalesces_concurrent_queries_without_changing_answers(
    stack, student, loop_thread
) -> None:
    query = stack.encoder("q", student, "query")
    document = stack.encoder("d", student, "document")
    runtime = stack.gateway([query], [document], query_coalesce_calls=1)
    (replica,) = runtime.gateway.query.replicas
    assert isinstance(replica, RemoteReplica)
    texts = [f"question number {i} about {w}" for i, w in enumerate(["cats", "tax", "rust"] * 16)]
    addr = f"127.0.0.1:{runtime.port}"
    with EmbedClient(addr) as client:
        alone = np.concatenate([client.embed([t], "query").embeddings for t in texts[:6]])
        before = replica.coalescer.stats.coalesced_calls
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda t: client.embed([t], "query").embeddings[0], texts))
    assert replica.coalescer.stats.coalesced_calls > before  # calls were shared
    assert np.allclose(np.stack(answers[:6]), alone, atol=1e-5)
    assert np.allclose(np.stack(answers), student.embed(texts), atol=1e-5)
