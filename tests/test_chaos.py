"""Short forms of `aegis-lab chaos`: the same scenario code on real processes, small counts.

One fleet (1 query encoder, 2 document encoders, 1 gateway as subprocesses) serves the
module; each scenario starts from it whole (killed replicas are restarted on their port).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from aegis_lab.chaos.fleet import Fleet, FleetConfig
from aegis_lab.chaos.oracle import ReferenceModel
from aegis_lab.chaos.run import run_scenarios
from aegis_lab.chaos.scenarios import SHORT, Context, Outcome
from aegis_serve.models.resolve import resolve_model


@pytest.fixture(scope="module")
def reference() -> ReferenceModel:
    return ReferenceModel(resolve_model("builtin:query", progress=False))


@pytest.fixture(scope="module")
def ctx(reference: ReferenceModel) -> Iterator[Context]:
    with Fleet(FleetConfig(reference.embedder.cfg.root)) as fleet:
        yield Context(fleet, reference, SHORT)


def run(ctx: Context, name: str) -> Outcome:
    (outcome,) = run_scenarios([name], ctx)
    assert outcome.tally.sent > 0 or outcome.skipped
    return outcome


def test_oracle_flags_swapped_and_missing_rows(reference: ReferenceModel) -> None:
    oracle = reference.oracle(2, 2, seed=7, tokens=(8, 32))
    texts = oracle.requests[0]
    right = np.stack([oracle.reference[t] for t in texts])
    assert oracle.check(texts, right) == 0
    assert oracle.check(texts, right[::-1]) == 2  # swapped rows
    assert oracle.check(texts, right[:1]) == 2  # a row lost
    other = np.stack([oracle.reference[t] for t in oracle.requests[1]])
    assert oracle.check(texts, other) == 2  # another request's vectors


def test_kill9_document_replica_loses_and_swaps_nothing(ctx: Context) -> None:
    o = run(ctx, "kill9")
    assert o.tally.wrong_or_lost == 0
    assert o.tally.succeeded + o.tally.failed == o.tally.sent == SHORT.requests
    assert o.passed, (o.checks, o.details)


def test_sigterm_document_replica_fails_nothing(ctx: Context) -> None:
    o = run(ctx, "sigterm")
    assert o.tally.failed == 0, o.details
    assert o.tally.wrong_or_lost == 0
    assert o.details["victim_exit"] == 0
    assert o.passed, (o.checks, o.details)


def test_query_pool_down_is_served_by_the_document_pool(ctx: Context) -> None:
    o = run(ctx, "query-down")
    assert o.tally.failed == 0, o.details
    assert o.tally.wrong_or_lost == 0
    assert o.tally.fallback > 0
    assert o.passed, (o.checks, o.details)


def test_overload_gets_results_or_resource_exhausted_then_recovers(ctx: Context) -> None:
    o = run(ctx, "overload")
    assert o.failed == 0, o.details["codes"]  # only OK or RESOURCE_EXHAUSTED
    assert o.tally.wrong_or_lost == 0
    assert o.details["recovery"]["succeeded"] == SHORT.recovery_requests
    assert all(g <= 300 for g in o.details["rss_growth_mb"].values()), o.details
    assert o.passed, (o.checks, o.details)


@pytest.mark.parametrize("name", ["hung-document", "hung-query"])
def test_hung_replica_is_ejected_and_taken_back(ctx: Context, name: str) -> None:
    """SIGSTOP: the replica answers nothing but keeps its connections; the gateway ejects it
    (its in-flight calls go elsewhere), nothing fails, and it is back after SIGCONT."""
    o = run(ctx, name)
    assert o.tally.failed == 0, o.details
    assert o.tally.wrong_or_lost == 0
    assert o.details["ejected_after_s"] is not None
    assert o.details["back_after_sigcont_s"] is not None
    assert o.passed, (o.checks, o.details)
    if name == "hung-query":
        assert o.tally.fallback > 0  # served by the document pool meanwhile


def test_gateway_restart_under_load_loses_nothing(ctx: Context) -> None:
    """kill -9 one of two gateways behind the client's round robin, then start it again: the
    client's retry policy carries its requests to the other one."""
    o = run(ctx, "gateway-restart")
    assert o.tally.failed == 0, o.details
    assert o.tally.wrong_or_lost == 0
    assert o.passed, (o.checks, o.details)


def test_soak_short_form_holds_memory_and_latency(ctx: Context) -> None:
    """The CI form of the soak (20 s at half capacity; `aegis-lab chaos --soak` runs 30 min)."""
    o = run(ctx, "soak")
    assert o.tally.failed == 0 and o.tally.wrong_or_lost == 0, o.details
    assert o.details["rss_growth_after_warmup"], o.details  # every process was sampled
    assert o.passed, (o.checks, o.details)


def test_bad_network_partition_and_netem(ctx: Context) -> None:
    """A replica behind a veth pair in its own namespace: a 10 s partition (and netem delay
    and loss where the kernel has netem); skipped, with the reason, where namespaces are
    refused."""
    o = run(ctx, "bad-network")
    if o.skipped:
        pytest.skip(o.skipped)
    assert o.tally.wrong_or_lost == 0
    assert o.passed, (o.checks, o.details)
    assert o.details["phases"]["partition 10 s"]["requests"] > 0


def test_report_merges_partial_runs_and_draws_the_plot(tmp_path) -> None:
    from aegis_lab.chaos.report import write_report

    def row(test: str, command: str, **extra: object) -> dict:
        return {"test": test, "requests": 10, "succeeded": 8, "rejected": 2, "failed": 0,
                "wrong_or_lost": 0, "max_rss_mb": 1.0, "passed": True, "command": command,
                "checks": {"ok": True}, "details": {}, **extra}  # fmt: skip

    md, js = tmp_path / "reliability.md", tmp_path / "reliability.json"
    write_report([row("a", "run 1"), row("b", "run 1")], "run 1", md, js)
    write_report([row("b", "run 2"), row("c", "run 2", skipped="no netns")], "run 2", md, js,
                 merge=True)  # fmt: skip
    text = md.read_text()
    assert [r["test"] for r in json.loads(js.read_text())["rows"]] == ["a", "b", "c"]
    assert "commands: per scenario" in text and "skipped on this machine: no netns" in text
    assert "![outcome of every request per scenario](reliability.png)" in text
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
