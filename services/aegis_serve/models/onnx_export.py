"""Exporting a transformer to ONNX: a fused graph where ONNX Runtime knows the architecture.

Two exports, tried in order:

1. **fused**: torch's TorchScript exporter on eager attention, then ONNX Runtime's transformer
   optimizer (`onnxruntime.transformers.optimizer`, the pass optimum's ORTOptimizer runs). On
   BERT-family encoders it fuses each layer's attention into one `Attention` op and the
   embeddings into `EmbedLayerNormalization`. Measured on the 2-core VM with the default query
   student (6 layers, 384 wide), 8 alternating rounds: one short query 1.97 vs 2.44 ms p50,
   batches of 32 at 1,117 vs 927 texts/s against the dynamo export. Its output must match the
   torch model on a padded batch (`parity_error`) or it is not used.
2. **dynamo**: torch's dynamo exporter, for anything the first path cannot take.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# Hugging Face model types whose layers ONNX Runtime's "bert" optimizer recognises (an
# encoder of self-attention + feed-forward blocks with post-layer-norm).
FUSABLE_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "distilbert"}
)
# Largest error allowed, relative to the largest activation, on real (unpadded) tokens.
MAX_PARITY_ERROR = 1e-3
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "last_hidden_state"


class _LastHidden(torch.nn.Module):
    """Keyword call with the two inputs we feed, returning only last_hidden_state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_dynamo(model: torch.nn.Module, path: Path, max_len: int) -> None:
    """Export `model`'s encoder to ONNX with dynamic batch and sequence axes (dynamo)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=max(3, max_len))
    example = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _LastHidden(model).eval(),
            (example, example.clone()),
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))


@contextlib.contextmanager
def quiet_onnx_tools() -> Iterator[None]:
    """Silence INFO logs while ONNX Runtime's offline tools run: the optimizer and the
    quantizer log every fusion and tensor (the quantizer on the root logger)."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run `model` on eager attention (the pattern the optimizer fuses), then restore it."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def export_fused(model: torch.nn.Module, path: Path, scratch: Path) -> dict[str, int]:
    """TorchScript export on eager attention, then ONNX Runtime's transformer fusions; returns
    the fused operators it made (raises when the model type is not one it knows)."""
    config = model.config
    if config.model_type not in FUSABLE_MODEL_TYPES:
        raise ValueError(f"no fusions for model type {config.model_type!r}")
    from onnxruntime.transformers import optimizer

    raw = scratch / "unfused.onnx"
    example = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with _eager_attention(model), warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHidden(model).eval(),
            (example, example.clone()),
            str(raw),
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, OUTPUT_NAME: axes},
            opset_version=17,
            dynamo=False,
        )
    with quiet_onnx_tools():
        optimized = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,  # the session applies its own optimizations at load
        )
        optimized.save_model_to_file(str(path))
        fused = optimized.get_fused_operator_statistics()
    raw.unlink()
    return {op: n for op, n in fused.items() if n}


def parity_error(model: torch.nn.Module, path: Path) -> float:
    """Largest difference between the ONNX graph and `model` on a padded batch of made-up
    token ids, relative to the largest activation, over real tokens only."""
    import onnxruntime as ort

    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 17, 40]
    ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, vocab, (n,), generator=gen)
        mask[row, :n] = 1
    with torch.inference_mode():
        expected = _LastHidden(model).eval()(ids, mask).float().numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    real = mask.numpy().astype(bool)
    scale = float(np.abs(expected[real]).max()) or 1.0
    return float(np.abs(got[real] - expected[real]).max()) / scale


def export_best(model: torch.nn.Module, path: Path, max_len: int, scratch: Path) -> str:
    """The fused graph when it builds and matches the model, else the dynamo export; returns
    which one was written, for the model's description."""
    try:
        fused = export_fused(model, path, scratch)
        error = parity_error(model, path)
        if error > MAX_PARITY_ERROR:
            raise ValueError(f"fused graph differs from the model by {error:.2e}")
        ops = ", ".join(f"{op} {n}" for op, n in sorted(fused.items()))
        log.info("fused ONNX graph (%s; parity error %.1e)", ops or "no fusions", error)
        return f"fused ({ops})" if ops else "torchscript"
    except Exception as exc:  # any failure: the dynamo export still serves the same model
        log.info("no fused ONNX graph (%s); using the dynamo export", str(exc).splitlines()[0])
        path.unlink(missing_ok=True)
    export_dynamo(model, path, max_len)
    return "dynamo"
