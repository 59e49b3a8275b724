"""Verified space identity: replicas that declare the right space but serve another model are
refused by their vectors, through real encoders and a real gateway, while the others serve."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from aegis_client import EmbedClient
from aegis_lab.canaries import write_canaries
from aegis_serve.models.canaries import (
    CANARIES_FILE,
    DEFAULT_CANARY_TEXTS,
    agreement_margin,
    load_canaries,
)
from aegis_serve.models.embedder import Embedder
from aegis_serve.models.resolve import resolve_model
from aegis_serve.models.st_dir import ModelDirError
from conftest import copy_model, wait_until

QUERIES = ["how do cats purr?", "capital of France"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, student_dir: Path) -> dict[str, Path]:
    """good: the student with its canaries; bad: other weights behind good's directory files
    (its canaries are good's); forged: the same other weights with canaries made by them."""
    root = tmp_path_factory.mktemp("canary-models")
    good = copy_model(student_dir, root / "good")
    (good / "aegis_space.json").write_text(json.dumps({"space_id": "minilm-test/384"}))
    write_canaries(good, "document")
    bad = copy_model(good, root / "bad")
    weights = load_file(str(bad / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    g = torch.Generator().manual_seed(0)
    weights[key] = weights[key][torch.randperm(weights[key].shape[0], generator=g)]
    save_file(weights, str(bad / "model.safetensors"))
    forged = root / "forged"
    shutil.copytree(bad, forged)
    write_canaries(forged, "query")
    return {"good": good, "bad": bad, "forged": forged}


def _states(gw) -> dict[str, tuple[bool, bool, str]]:
    info = gw.gateway.get_info()
    query = next(p for p in info.pools if p.role == "query")
    return {s.target: (s.healthy, s.verified, s.problem) for s in query.replica_states}


def test_mis_declared_replicas_are_refused_by_vectors_while_the_others_serve(stack, models, caplog):
    caplog.set_level(logging.INFO, logger="aegis_serve.gateway.canary")
    good, bad, forged = (Embedder(models[k]) for k in ("good", "bad", "forged"))
    d = stack.encoder("d", good, "document")
    q_good = stack.encoder("q-good", good, "query")
    q_bad = stack.encoder("q-bad", bad, "query")
    q_forged = stack.encoder("q-forged", forged, "query")
    gw = stack.gateway([q_good, q_bad, q_forged], [d])
    # All three declare the same space; names alone would admit them.
    assert {r.info.space_id for r in gw.gateway.query.replicas} == {good.space.space_id}
    assert wait_until(lambda: all(s[2] != "" or s[0] for s in _states(gw).values()), 30)
    states = _states(gw)
    assert states[q_good][:2] == (True, True), states
    healthy, verified, problem = states[q_bad]
    assert not healthy and not verified
    assert "its own canary texts differ from the references" in problem, problem
    healthy, verified, problem = states[q_forged]
    assert not healthy and not verified
    assert "agreement margin" in problem and "does not write into space" in problem, problem
    assert gw.gateway.serving  # the good replicas serve
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=30) as client:
        for _ in range(6):  # round robin would have reached every admitted replica
            got = client.embed(QUERIES, "query").embeddings
            np.testing.assert_allclose(got, good.embed(QUERIES), atol=1e-5)
        assert client.info().serving
    fails = gw.gateway.canaries.checks.bind({"pool": "query", "result": "fail"}).value
    passes = gw.gateway.canaries.checks.bind({"pool": "document", "result": "pass"}).value
    assert fails >= 2 and passes >= 1
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any(q_bad in m for m in refused) and any(q_forged in m for m in refused)
    # Stays refused across probes (no flapping back into rotation), with one log line each.
    stack.refresh(gw)
    stack.refresh(gw)
    assert not _states(gw)[q_bad][0] and not _states(gw)[q_forged][0]
    assert len([m for m in refused if q_bad in m]) == 1


def test_a_document_replica_with_other_weights_is_refused(stack, models):
    good, bad = Embedder(models["good"]), Embedder(models["bad"])
    d_good = stack.encoder("d-good", good, "document")
    d_bad = stack.encoder("d-bad", bad, "document")
    gw = stack.gateway([d_good], [d_good, d_bad])
    assert wait_until(lambda: not gw.gateway.document.replicas[1].problem.startswith("await"), 30)
    doc = next(p for p in gw.gateway.get_info().pools if p.role == "document")
    states = {s.target: s for s in doc.replica_states}
    assert states[d_good].healthy and states[d_good].verified
    assert not states[d_bad].healthy and "canary check failed" in states[d_bad].problem


def test_replicas_without_canaries_are_admitted_unverified(stack, student, caplog):
    caplog.set_level(logging.WARNING, logger="aegis_serve.gateway.canary")
    d = stack.encoder("d", student, "document")
    gw = stack.gateway([d], [d])
    assert gw.gateway.serving
    doc = next(p for p in gw.gateway.get_info().pools if p.role == "document")
    assert doc.replica_states[0].healthy and not doc.replica_states[0].verified
    assert "declared, not verified" in caplog.text


def test_canary_checks_can_be_turned_off(stack, models):
    bad = Embedder(models["bad"])
    d = stack.encoder("d", bad, "document")
    gw = stack.gateway([d], [d], canary_interval_s=0)
    assert gw.gateway.serving and len(gw.gateway.document.healthy) == 1


def test_shipped_models_carry_canaries_that_agree():
    """The builtin query students score their documented agreement with the teacher's
    canaries, far above the gateway's default threshold."""
    doc = load_canaries(resolve_model("builtin:document"), 768)
    assert doc is not None and doc.texts == DEFAULT_CANARY_TEXTS
    for spec in ("builtin:query-leaf", "builtin:query-linear", "builtin:query-exit2"):
        model_dir = resolve_model(spec)
        own = load_canaries(model_dir, 768)
        assert own is not None, spec
        got = Embedder(model_dir).embed(list(doc.texts))
        assert agreement_margin(got, doc.vectors) > 0.4, spec


def test_a_malformed_canaries_file_is_a_clear_model_error(tmp_path, models):
    broken = copy_model(models["good"], tmp_path / "broken")
    raw = json.loads((broken / CANARIES_FILE).read_text())
    raw["vectors"] = raw["vectors"][:3]
    (broken / CANARIES_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelDirError, match="vectors are"):
        Embedder(broken)


def test_a_refused_replica_is_readmitted_once_its_vectors_are_right_again(stack, models):
    """Refused replicas are checked again every interval: one that computes with the right
    weights again (here its model is swapped in place, as a fixed rollout under the same
    address would) returns to rotation."""
    good, bad = Embedder(models["good"]), Embedder(models["bad"])
    d = stack.encoder("d", good, "document")
    q_good = stack.encoder("q-good", good, "query")
    q_bad = stack.encoder("q-bad", bad, "query")
    gw = stack.gateway([q_good, q_bad], [d], canary_interval_s=0.5)
    assert wait_until(lambda: "canary check failed" in _states(gw)[q_bad][2], 30)
    _, core = stack.encoders["q-bad"]
    core.batcher.runner = good  # same tokenizer: only the weights were wrong
    assert wait_until(lambda: _states(gw)[q_bad][:2] == (True, True), 30), _states(gw)
    assert _states(gw)[q_bad][2] == ""
