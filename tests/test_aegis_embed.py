"""The aegis-embed architecture path (ModernBERT + YaRN, 2D Matryoshka) on a tiny random config."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from aegis_client import EmbedClient, InvalidInputError
from aegis_lab.random_aegis import write_aegis_embed_dir
from aegis_serve.models.embedder import Embedder

TEXTS = ["hello world", "Embeddings map text into vectors. " * 40, "東京は日本の首都です。"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_aegis_embed_dir(tmp_path_factory.mktemp("aegis") / "tiny", tiny=True)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return Embedder(tiny_dir)


def test_loads_as_modernbert_with_yarn_and_matches_sentence_transformers(tiny, tiny_dir):
    cfg = tiny.hf_config
    assert cfg.model_type == "modernbert"
    assert cfg.rope_parameters["full_attention"]["rope_type"] == "yarn"
    assert tiny.max_tokens == 32_768
    assert tiny.space.layer_options == (6, 3, 2, 1)
    assert tiny.space.matryoshka_dims == (64, 32, 16, 8)
    ref = SentenceTransformer(str(tiny_dir), device="cpu").encode(TEXTS)
    got = tiny.embed(TEXTS)
    assert ((ref * got).sum(1)).min() >= 0.9999


@pytest.mark.parametrize("k", [3, 2, 1])
def test_layer_exit_equals_truncated_layer_list(tiny, tiny_dir, k):
    reference = Embedder(tiny_dir)
    reference.model.layers = torch.nn.ModuleList(list(reference.model.layers)[:k])
    expected = reference.embed(TEXTS)
    got = tiny.embed(TEXTS, layers=k)
    assert ((expected * got).sum(1)).min() >= 0.99999
    assert len(tiny.model.layers) == 6


def test_layer_exit_runs_only_k_layers(tiny):
    calls: list[int] = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(tiny.model.layers)
    ]
    try:
        tiny.embed(TEXTS[:1], layers=2)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0, 1]


def test_long_input_is_served_without_truncation(tiny):
    items = tiny.tokenize(["word " * 3000])
    assert not items[0].truncated and len(items[0].ids) > 8192
    vec = tiny.forward(tiny.collate(items))
    assert np.isfinite(vec).all() and abs(float(np.linalg.norm(vec)) - 1) < 1e-5


def test_layers_and_dims_through_the_gateway(stack, tiny):
    q = stack.encoder("q", tiny, "query")
    d = stack.encoder("d", tiny, "document")
    gw = stack.gateway([q], [d])
    with EmbedClient(f"127.0.0.1:{gw.port}", timeout=60) as client:
        info = client.info()
        assert list(info.layer_options) == [6, 3, 2, 1]
        for layers in (0, 3, 1):
            res = client.embed(TEXTS, "document", layers=layers, dimensions=32)
            full = tiny.embed(TEXTS, layers=layers)[:, :32]
            ref = full / np.linalg.norm(full, axis=1, keepdims=True)
            np.testing.assert_allclose(res.embeddings, ref, atol=1e-5)
            assert res.raw.layers == (layers or 6)
        for bad, needle in (({"layers": 4}, "layers=4 is not offered"),):
            with pytest.raises(InvalidInputError) as err:
                client.embed(TEXTS, "document", **bad)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert needle in err.value.details


@pytest.mark.parametrize("layers", [0, 3])
def test_packed_flex_attention_equals_padded_sdpa(tiny_dir, layers):
    padded = Embedder(tiny_dir, attention="padded")
    packed = Embedder(tiny_dir, attention="packed")
    assert packed.packs_sequences and not padded.packs_sequences
    texts = [*TEXTS, "word " * 150, "x"]  # lengths straddle the 128-token blocks and the window
    a, b = padded.embed(texts, layers=layers), packed.embed(texts, layers=layers)
    assert ((a * b).sum(1)).min() >= 0.9999


def test_packed_attention_is_modernbert_only(student_dir):
    from aegis_serve.models.st_dir import ModelDirError

    with pytest.raises(ModelDirError, match="ModernBERT"):
        Embedder(student_dir, attention="packed")


def test_auto_attention_rule_packs_several_texts_and_pads_a_lone_one():
    from aegis_serve.models.embedder import packs_batch

    assert not packs_batch("auto", [32768]) and not packs_batch("auto", [5])
    assert packs_batch("auto", [5, 2000]) and packs_batch("auto", [40] * 64)
    assert packs_batch("packed", [32768]) and not packs_batch("padded", [40] * 64)


def test_auto_attention_is_padded_on_cpu(tiny_dir):
    auto = Embedder(tiny_dir, attention="auto")
    assert auto.attention == "padded" and not auto.packs_sequences
    assert auto.hf_config._attn_implementation == "sdpa"


@pytest.mark.parametrize("layers", [0, 3])
def test_auto_attention_decides_per_batch_and_both_paths_give_the_padded_vectors(tiny_dir, layers):
    """`auto` as it resolves on CUDA (FlexAttention compiled there), run here on CPU: a
    lone text goes padded through SDPA, several go packed, and the vectors do not change."""
    from aegis_serve.models.packed_attention import ATTN_NAME, PackedBatch

    padded = Embedder(tiny_dir, attention="padded")
    auto = Embedder(tiny_dir, attention="packed")
    auto.attention = "auto"  # what _resolve_attention returns for ModernBERT on CUDA
    texts = [*TEXTS, "word " * 150, "x"]
    reference = padded.embed(texts, layers=layers)

    lone = auto.collate(auto.tokenize(["word " * 150]))
    assert isinstance(lone, dict)
    alone = auto.forward(lone, layers)
    assert auto.hf_config._attn_implementation == "sdpa"
    several = auto.collate(auto.tokenize(texts))
    assert isinstance(several, PackedBatch)
    together = auto.forward(several, layers)
    assert auto.hf_config._attn_implementation == ATTN_NAME
    assert float((alone[0] * reference[3]).sum()) >= 0.9999
    assert ((together * reference).sum(1)).min() >= 0.9999
    lone_again = auto.forward(auto.collate(auto.tokenize(["x"])), layers)  # and back again
    assert auto.hf_config._attn_implementation == "sdpa"
    assert float((lone_again[0] * reference[4]).sum()) >= 0.9999
