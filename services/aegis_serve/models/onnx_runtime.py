"""ONNX Runtime backend for the transformer part of a CPU query model.

The transformer (input_ids, attention_mask → last_hidden_state) is exported once with
torch's dynamo exporter (dynamic batch and sequence), optionally quantized to int8
weights with onnxruntime's dynamic quantization, and cached next to the other prepared
models. Pooling, Dense and Normalize stay in torch (`Embedder._pool` / `_head`), so every
backend shares the same head code. Only full depth is exported: models offering
2D-Matryoshka layer exit keep the torch backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from aegis_serve.cache import cache_dir, cached_build
from aegis_serve.models.st_dir import weights_fingerprint

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")


class BackendUnavailable(RuntimeError):
    """The backend's packages are not installed (the `onnx` extra)."""


def _missing() -> list[str]:
    import importlib.util

    return [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]


def onnx_available() -> bool:
    """Whether the `onnx` extra is installed (without importing it)."""
    return not _missing()


def _require() -> None:
    missing = _missing()
    if missing:
        raise BackendUnavailable(
            f"the onnx backends need {', '.join(missing)}: pip install 'aegis-serve[onnx]'"
        )


class _LastHidden(torch.nn.Module):
    """Keyword call with the two inputs we feed, returning only last_hidden_state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _fingerprint(model_dir: Path, backend: str) -> str:
    """Changes when the weights, the architecture config, torch or onnxruntime change."""
    import onnxruntime

    config = model_dir / "config.json"
    arch = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
    key = f"{backend}|{torch.__version__}|{onnxruntime.__version__}|{arch}"
    return hashlib.sha256(f"{key}|{weights_fingerprint(model_dir)}".encode()).hexdigest()[:16]


def export(model: torch.nn.Module, path: Path, max_len: int) -> None:
    """Export `model`'s encoder to ONNX with dynamic batch and sequence axes."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=max(3, max_len))
    example = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _LastHidden(model).eval(),
            (example, example.clone()),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 weights, activations quantized per call (no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)


def prepared_model(model: torch.nn.Module, model_dir: Path, backend: str, max_len: int) -> Path:
    """The cached .onnx file for this model and backend, built once across processes."""
    _require()
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"not an onnx backend: {backend}")

    def build(tmp: Path) -> Path:
        root = tmp / "model"
        root.mkdir()
        log.info("exporting %s to ONNX (once)...", model_dir.name)
        export(model, root / "model.onnx", max_len)
        if backend == "onnx-int8":
            log.info("quantizing %s to int8 weights (once)...", model_dir.name)
            quantize_int8(root / "model.onnx", root / "model-int8.onnx")
            (root / "model.onnx").unlink()
            (root / "model-int8.onnx").rename(root / "model.onnx")
        return root

    target = cache_dir() / "onnx" / f"{model_dir.name}-{backend}"
    fingerprint = _fingerprint(model_dir, backend)
    return cached_build(target, fingerprint, build, f"{backend} of {model_dir.name}") / "model.onnx"


class OnnxEncoder:
    """Callable like the HF model's encoder: (ids, mask) → last_hidden_state tensor."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        # Intra-op threads spin briefly after each run. Measured on the 2-core VM through the
        # encoder service: p50 2.87 ms with spinning vs 3.63 ms without, and 872 vs 913
        # queries/s at 32 in flight; latency wins for a query pool. AEGIS_ONNX_SPINNING=0
        # turns it off (e.g. when the pool shares cores with other busy processes).
        spin = os.environ.get("AEGIS_ONNX_SPINNING", "1")
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            "input_ids": input_ids.numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.numpy().astype(np.int64, copy=False),
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return torch.from_numpy(hidden)
