"""ONNX Runtime backend for the transformer part of a CPU query model.

The transformer (input_ids, attention_mask → last_hidden_state) is exported once (a fused
graph where ONNX Runtime knows the architecture, else torch's dynamo export: onnx_export.py),
optionally quantized to int8 weights with onnxruntime's dynamic quantization, and cached next
to the other prepared models. Pooling, Dense and Normalize stay in torch (`Embedder._pool` /
`_head`), so every backend shares the same head code. Only full depth is exported: models
offering 2D-Matryoshka layer exit keep the torch backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from aegis_serve.cache import cache_dir, cached_build
from aegis_serve.models.onnx_export import export_best, quiet_onnx_tools
from aegis_serve.models.st_dir import weights_fingerprint

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")
# Bumped when the export changes, so cached graphs of an older export are rebuilt.
EXPORT_VERSION = 2
# Beside model.onnx: which export it is (`export_best`), for the model's description.
GRAPH_NOTE = "graph.txt"


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


def _fingerprint(model_dir: Path, backend: str) -> str:
    """Changes when the weights, the architecture config, the export, torch or onnxruntime
    change."""
    import onnxruntime

    config = model_dir / "config.json"
    arch = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
    key = f"{backend}|{EXPORT_VERSION}|{torch.__version__}|{onnxruntime.__version__}|{arch}"
    return hashlib.sha256(f"{key}|{weights_fingerprint(model_dir)}".encode()).hexdigest()[:16]


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 weights, activations quantized per call (no calibration data needed)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnx_tools():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Shape inference knows no types behind fused contrib ops (Attention,
            # SkipLayerNormalization): their outputs are float activations.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )


def prepared_model(model: torch.nn.Module, model_dir: Path, backend: str, max_len: int) -> Path:
    """The cached .onnx file for this model and backend, built once across processes."""
    _require()
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"not an onnx backend: {backend}")

    def build(tmp: Path) -> Path:
        root = tmp / "model"
        root.mkdir()
        log.info("exporting %s to ONNX (once)...", model_dir.name)
        graph = export_best(model, root / "model.onnx", max_len, tmp)
        if backend == "onnx-int8":
            log.info("quantizing %s to int8 weights (once)...", model_dir.name)
            quantize_int8(root / "model.onnx", root / "model-int8.onnx")
            (root / "model.onnx").unlink()
            (root / "model-int8.onnx").rename(root / "model.onnx")
            graph += ", int8 weights"
        (root / GRAPH_NOTE).write_text(graph + "\n", encoding="utf-8")
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
        note = path.parent / GRAPH_NOTE
        self.graph = note.read_text(encoding="utf-8").strip() if note.is_file() else "unknown"
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            "input_ids": input_ids.numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.numpy().astype(np.int64, copy=False),
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return torch.from_numpy(hidden)
