"""CPU backends of the query pool: torch, torch-int8, onnx, onnx-int8.

Each must give the same vectors as the torch backend (ONNX fp32: identical up to float
noise) or close ones (int8: the quality cost is measured by `aegis-lab bench backends`),
through the real encoder service and gateway too. Backends that cannot serve a model
(ONNX and 2D-Matryoshka layer exit, GPUs) refuse at start with a message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from aegis_client import EmbedClient
from aegis_lab.random_aegis import write_aegis_embed_dir
from aegis_serve.models import onnx_export
from aegis_serve.models.embedder import Embedder
from aegis_serve.models.onnx_export import export_best, parity_error
from aegis_serve.models.resolve import resolve_model
from aegis_serve.models.st_dir import ModelDirError

TEXTS = [
    "what is a zebra",
    "how do black holes form in the early universe",
    "sourdough bread recipe for beginners with a long, slow fermentation",
    "x",
    "Wie funktioniert die Photosynthese?",
]
# Lowest cosine to the torch backend's vector allowed per backend (measured: onnx 1.00000,
# onnx-int8 ≥ 0.978, torch-int8 ≥ 0.85 on these texts).
MIN_COS = {"onnx": 0.9999, "onnx-int8": 0.96, "torch-int8": 0.8}
# int8 quantizes activations with one scale per batch tensor, so a text's vector moves with
# its batch-mates: lowest cosine between one-at-a-time and batched (measured 0.98 / 0.91).
MIN_BATCH_COS = {"onnx-int8": 0.97, "torch-int8": 0.88}


@pytest.fixture(scope="module")
def aligned() -> Path:
    return resolve_model("builtin:query", progress=False)


@pytest.fixture(scope="module")
def reference(aligned: Path) -> np.ndarray:
    return Embedder(aligned).embed(TEXTS)


@pytest.fixture(scope="module")
def backends(aligned: Path) -> dict[str, Embedder]:
    return {b: Embedder(aligned, backend=b) for b in MIN_COS}


@pytest.mark.parametrize("backend", sorted(MIN_COS))
def test_backend_vectors_match_torch(backends, reference: np.ndarray, backend: str) -> None:
    emb = backends[backend]
    vectors = emb.embed(TEXTS)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cos = (vectors * reference).sum(axis=1)
    assert cos.min() >= MIN_COS[backend], cos
    single = np.concatenate([emb.embed([t]) for t in TEXTS])
    if backend.endswith("int8"):
        assert (single * vectors).sum(axis=1).min() >= MIN_BATCH_COS[backend]
    else:  # batched (padded) and one-at-a-time agree: padding is masked out
        assert np.allclose(single, vectors, atol=1e-5)
    assert emb.device_label == f"cpu ({backend})"


def test_onnx_export_is_cached(backends, aligned: Path) -> None:
    first = backends["onnx"]._onnx.path
    again = Embedder(aligned, backend="onnx")._onnx.path
    assert first == again and first.exists()
    assert backends["onnx-int8"]._onnx.path.stat().st_size < first.stat().st_size / 2


def test_encoder_and_gateway_serve_the_onnx_backend(stack, backends) -> None:
    emb = backends["onnx"]
    query = stack.encoder("q", emb, "query")
    document = stack.encoder("d", emb, "document")
    runtime = stack.gateway([query], [document])
    with EmbedClient(f"127.0.0.1:{runtime.port}") as client:
        got = client.embed(TEXTS, "query")
        info = client.info()
    assert np.allclose(got.embeddings, emb.embed(TEXTS), atol=1e-5)
    assert {p.device for p in info.pools} == {"cpu (onnx)"}


def test_onnx_backends_run_the_fused_graph(backends) -> None:
    """The BERT-family student gets ONNX Runtime's fused attention and embeddings, also under
    int8 weights (the vectors are checked against torch above)."""
    for backend in ("onnx", "onnx-int8"):
        graph = backends[backend].describe()["onnx_graph"]
        assert graph.startswith("fused (Attention 6,") and "EmbedLayerNormalization 1" in graph
    assert backends["onnx-int8"].describe()["onnx_graph"].endswith("int8 weights")


def _tiny_bert() -> torch.nn.Module:
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return BertModel(config, add_pooling_layer=False).eval()


def test_export_falls_back_to_dynamo_when_fusion_fails_parity(tmp_path: Path, monkeypatch) -> None:
    model = _tiny_bert()
    fused = tmp_path / "fused.onnx"
    assert export_best(model, fused, 64, tmp_path).startswith("fused (Attention 2,")
    assert parity_error(model, fused) < onnx_export.MAX_PARITY_ERROR
    monkeypatch.setattr(onnx_export, "MAX_PARITY_ERROR", -1.0)  # no graph can pass now
    plain = tmp_path / "plain.onnx"
    assert export_best(model, plain, 64, tmp_path) == "dynamo"
    assert parity_error(model, plain) < 1e-3  # the fallback still serves the same model
    assert not (tmp_path / "unfused.onnx").exists()


def test_export_of_unknown_architectures_is_the_dynamo_graph(tmp_path: Path) -> None:
    model = _tiny_bert()
    model.config.model_type = "not-a-bert"
    path = tmp_path / "model.onnx"
    assert export_best(model, path, 64, tmp_path) == "dynamo"
    assert parity_error(model, path) < 1e-3


def test_onnx_refuses_models_with_layer_exit(tmp_path: Path) -> None:
    tiny = write_aegis_embed_dir(tmp_path / "tiny", tiny=True)
    with pytest.raises(ModelDirError, match="full depth only"):
        Embedder(tiny, backend="onnx")


def test_bad_backend_choices_are_clear(aligned: Path) -> None:
    with pytest.raises(ModelDirError, match="unknown backend 'tensorrt'"):
        Embedder(aligned, backend="tensorrt")
    with pytest.raises(ModelDirError, match="runs on cpu in float32 only"):
        Embedder(aligned, backend="onnx-int8", dtype="bfloat16")


def test_cli_backend_flag_reaches_the_encoder_settings() -> None:
    from aegis_serve.cli import _settings, build_parser
    from aegis_serve.settings import EncoderSettings

    ns = build_parser().parse_args(
        ["encoder", "--model", "m", "--role", "query", "--backend", "onnx-int8"]
    )
    assert _settings(EncoderSettings, ns).backend == "onnx-int8"
    bad = build_parser()
    with pytest.raises(SystemExit):
        bad.parse_args(["encoder", "--model", "m", "--role", "query", "--backend", "tvm"])


def test_bench_backends_writes_its_section(tmp_path: Path) -> None:
    """The bench end to end on a tiny JSON dataset (the student embeds the documents too)."""
    import json

    from aegis_lab.bench.backends import BackendsBenchConfig, run_backends_bench

    dataset = tmp_path / "set.json"
    docs = ["zebra: a striped horse", "bread: food baked from dough", "black hole: dense star"]
    dataset.write_text(json.dumps({"queries": TEXTS[:3], "documents": docs, "relevant": [0, 2, 1]}))
    cfg = BackendsBenchConfig(
        teacher="builtin:query", dataset=str(dataset), backends=["torch", "onnx"], requests=5,
        batch_texts=3, out_dir=tmp_path / "docs", command="test", progress=False,
    )  # fmt: skip
    payload = run_backends_bench(cfg)
    rows = {r["backend"]: r for r in payload["rows"]}
    assert rows["torch"]["latency_speedup"] == 1.0
    assert rows["onnx"]["cos_to_torch_min"] > 0.9999
    assert rows["onnx"]["ndcg_at_10"] == rows["torch"]["ndcg_at_10"]
    saved = json.loads((tmp_path / "docs/results/query_backends.json").read_text())
    assert [r["backend"] for r in saved["rows"]] == ["torch", "onnx"]
    assert (tmp_path / "docs/results/query_backends.png").stat().st_size > 0
    assert "## Query model backends" in (tmp_path / "docs/benchmarks.md").read_text()
