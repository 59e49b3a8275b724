"""The asymmetric index: usearch storage of binary/int8/float32 vectors with int8 rescoring,
on synthetic vectors (exactness, persistence) and end to end through a live gateway and the
`aegis-serve index` / `search` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("usearch")

from pairs import DOCS, QUERIES

from aegis_client import EmbedClient
from aegis_client.index import AsymmetricIndex, IndexSpec, build_index, search_texts
from aegis_client.index.codecs import Int8Codec, fit_rotation, pack_binary, shape_dims
from aegis_serve.cli import main as cli_main

SPECS = [
    IndexSpec("float32", 0, rescore=False),
    IndexSpec("float32", 256, rescore=False, kind="hnsw"),
    IndexSpec("int8", 0, rescore=False),
    IndexSpec("int8", 256, rescore=True, kind="hnsw"),
    IndexSpec("binary", 256, rescore=False),
    IndexSpec("binary", 256, rescore=True),
    IndexSpec("binary", 128, rescore=True, kind="hnsw"),
]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic():
    """2,000 documents in clusters; each query is a noisy copy of one document."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((40, 768))
    docs = _unit(centers[rng.integers(0, 40, 2000)] + 0.9 * rng.standard_normal((2000, 768)))
    targets = rng.choice(2000, 100, replace=False)
    queries = _unit(docs[targets] + 0.03 * rng.standard_normal((100, 768)))
    return docs, queries, targets


def _exact_top(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_every_setting_finds_the_target_and_survives_save_and_load(synthetic, spec, tmp_path):
    docs, queries, targets = synthetic
    index = AsymmetricIndex.from_vectors(docs, spec, {"document_space_id": "s"})
    found = index.search(queries, k=10)
    assert found.keys.shape == found.scores.shape == (100, 10)
    assert (found.keys[:, 0] == targets).mean() >= 0.97
    assert np.all(np.diff(found.scores, axis=1) <= 1e-6)  # best first
    assert (index.rotation is not None) == spec.rotates(768)
    loaded = AsymmetricIndex.load(index.save(tmp_path / "ix"))
    again = loaded.search(queries, k=10)
    np.testing.assert_array_equal(again.keys, found.keys)
    np.testing.assert_allclose(again.scores, found.scores, atol=1e-6)
    assert loaded.meta == {"document_space_id": "s"} and loaded.count == 2000
    per_doc = {"float32": 4 * (spec.dims or 768), "int8": spec.dims or 768, "binary": spec.dims / 8}
    if spec.kind == "flat":
        assert index.memory_bytes == 2000 * per_doc[spec.storage]
    else:  # the graph's links come on top of the vectors
        assert index.memory_bytes > 2000 * per_doc[spec.storage]
    assert index.rescore_bytes == (2000 * 768 if spec.rescore else 0)


def test_rescoring_restores_the_exact_float_ranking(synthetic):
    docs, queries, _ = synthetic
    exact = _exact_top(docs, queries, 10)
    plain = AsymmetricIndex.from_vectors(docs, IndexSpec("binary", 128, rescore=False))
    rescored = AsymmetricIndex.from_vectors(docs, IndexSpec("binary", 128, rescore=True))

    def overlap(keys: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(keys, exact, strict=True)]))

    before = overlap(plain.search(queries, 10).keys)
    after = overlap(rescored.search(queries, 10, rescore_multiplier=10).keys)
    assert after > before + 0.2 and after >= 0.9
    # The spec's multiplier is the default; more candidates never rank worse here.
    wide = AsymmetricIndex.from_vectors(docs, IndexSpec("binary", 128, rescore_multiplier=10))
    np.testing.assert_array_equal(
        wide.search(queries, 10).keys, rescored.search(queries, 10, 10).keys
    )
    assert overlap(rescored.search(queries, 10).keys) <= after
    # Rescored scores are the dot products with the int8 vectors: within a step of exact.
    top = rescored.search(queries[:5], 1)
    np.testing.assert_allclose(
        top.scores[:, 0], np.sum(queries[:5] * docs[top.keys[:, 0]], axis=1), atol=0.02
    )


def test_add_k_beyond_count_and_bad_shapes(synthetic):
    docs, queries, targets = synthetic
    index = AsymmetricIndex.from_vectors(docs[:5], IndexSpec("binary", 256, rescore=True))
    found = index.search(queries[:2], k=50)
    assert found.keys.shape == (2, 5) and set(found.keys[0]) == set(range(5))
    keys = index.add(docs[5:])
    assert list(keys[:2]) == [5, 6] and index.count == 2000
    assert (index.search(queries, 1).keys[:, 0] == targets).mean() >= 0.97
    with pytest.raises(ValueError, match="queries must be"):
        index.search(queries[:, :100])
    with pytest.raises(ValueError, match="documents must be"):
        index.add(docs[:2, :100])
    with pytest.raises(ValueError, match="multiple of 8"):
        IndexSpec("binary", 100)
    with pytest.raises(ValueError, match="storage"):
        IndexSpec("ubinary", 256)
    with pytest.raises(ValueError, match="rescore_multiplier"):
        IndexSpec("binary", 256, rescore_multiplier=0)
    with pytest.raises(ValueError, match="rescore_multiplier"):
        index.search(queries[:1], rescore_multiplier=0)


def test_a_fitted_rotation_keeps_what_the_first_dims_lose():
    """Documents whose signal sits in their *last* dims (a model not trained for truncation):
    the first 128 dims miss it, the fitted projection finds it."""
    rng = np.random.default_rng(5)
    signal = rng.standard_normal((1500, 64)) * 3
    docs = _unit(np.concatenate([rng.standard_normal((1500, 704)) * 0.3, signal], axis=1))
    # A query shares its document's signal dims only: the first dims tell nothing.
    noise = rng.standard_normal((80, 704)) * 0.3
    queries = _unit(np.concatenate([noise, signal[:80] + 0.1 * rng.standard_normal((80, 64))], 1))
    rotation = fit_rotation(docs, 128)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(128), atol=1e-4)

    def top1(spec: IndexSpec) -> float:
        index = AsymmetricIndex.from_vectors(docs, spec)
        return float((index.search(queries, 1).keys[:, 0] == np.arange(80)).mean())

    rotated = top1(IndexSpec("binary", 128, rescore=False))
    prefix = top1(IndexSpec("binary", 128, rescore=False, rotate=False))
    assert rotated >= 0.8 and prefix < 0.2
    assert IndexSpec("float32", 0).rotates(768) is False
    assert IndexSpec("binary", 0).rotates(768) and IndexSpec("int8", 256).rotates(768)
    assert not IndexSpec("binary", 256, rotate=False).rotates(768)


def test_int8_codec_round_trips_within_one_step():
    rng = np.random.default_rng(1)
    x = _unit(rng.standard_normal((500, 64)))
    codec = Int8Codec.fit(x)
    err = np.abs(codec.decode(codec.encode(x)) - np.clip(x, -codec.scale, codec.scale))
    assert err.max() <= codec.scale / 127 / 2 + 1e-7


# ----------------------------------------------------------------- through a live gateway


@pytest.fixture(scope="module")
def gateway(asymmetric_pools):
    stack, query, document = asymmetric_pools
    runtime = stack.gateway(query, document)
    yield f"127.0.0.1:{runtime.port}"
    stack.lt.run(runtime.handle.server.stop(0))
    stack.lt.run(runtime.close())
    stack.gateways.remove(runtime)


@pytest.mark.teacher
def test_the_index_quantizes_as_the_service_does(gateway):
    with EmbedClient(gateway) as client:
        full = client.embed_documents(DOCS)
        for dims in (768, 256, 64):
            served = client.embed_documents(DOCS, dimensions=dims, encoding="ubinary")
            np.testing.assert_array_equal(pack_binary(shape_dims(full, dims)), served)
            floats = client.embed_documents(DOCS, dimensions=dims)
            np.testing.assert_allclose(shape_dims(full, dims), floats, atol=1e-6)


@pytest.mark.teacher
@pytest.mark.parametrize("spec", [IndexSpec("binary", 256), IndexSpec("int8", 0, kind="hnsw")],
                         ids=lambda s: s.label())  # fmt: skip
def test_build_and_search_through_the_gateway(gateway, spec):
    with EmbedClient(gateway) as client:
        index = build_index(client, DOCS, spec, batch_size=4)
        found = search_texts(client, index, QUERIES, k=3, batch_size=4)
        assert list(found.keys[:, 0]) == list(range(len(DOCS)))
        space = client.info().space_id
        assert index.meta["document_space_id"] == space
        index.meta["document_space_id"] = "another-space"
        with pytest.raises(ValueError, match="rebuild the index"):
            search_texts(client, index, QUERIES[:1])
        with pytest.raises(ValueError, match="dims=104 is not offered"):
            build_index(client, DOCS, IndexSpec("binary", 104, rotate=False))
        rotated = build_index(client, DOCS, IndexSpec("binary", 104, rescore=False))
        assert rotated.dims == 104 and rotated.memory_bytes == 13 * len(DOCS)


@pytest.mark.teacher
def test_index_and_search_commands(gateway, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS))
    )
    out = tmp_path / "ix"
    assert (
        cli_main(["index", str(docs), "--out", str(out), "--target", gateway, "--batch-size", "4"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["documents"] == len(DOCS) and summary["memory_bytes_per_doc"] == 32.0
    assert (
        summary["rescore_bytes_per_doc"] == 768.0
        and summary["spec"] == "flat binary@256 rotated + int8 rescore of 10k"
    )
    assert (
        cli_main(["search", str(out), QUERIES[2], QUERIES[7], "-k", "2", "--target", gateway]) == 0
    )
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(h["query"], h["rank"]) for h in hits] == [
        (QUERIES[2], 1),
        (QUERIES[2], 2),
        (QUERIES[7], 1),
        (QUERIES[7], 2),
    ]
    assert hits[0]["id"] == "d2" and hits[0]["text"] == DOCS[2] and hits[2]["id"] == "d7"
    assert hits[0]["score"] > hits[1]["score"]
    # Bad input is one line and exit 1, not a traceback.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    assert cli_main(["index", str(bad), "--out", str(out), "--target", gateway]) == 1
    assert "bad.jsonl:2: expected a JSON object with a `text`" in capsys.readouterr().err
    assert (
        cli_main(["index", str(docs), "--out", str(out), "--target", gateway, "--dims", "100"]) == 1
    )
    assert "multiple of 8" in capsys.readouterr().err
    assert cli_main(["search", str(tmp_path), "q", "--target", gateway]) == 1
    assert "is not an aegis index" in capsys.readouterr().err
