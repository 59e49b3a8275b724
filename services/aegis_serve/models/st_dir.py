"""Read a Sentence-Transformers model directory without importing sentence-transformers.

The serving path must not depend on sentence-transformers at run time, but it must read
the same directory layout (modules.json: Transformer → Pooling → optional Dense →
Normalize; prompts in config_sentence_transformers.json) so any ST model can be served.
The space manifest (`aegis_space.json`) is our addition: it declares which vector space
the model writes into, its Matryoshka dims, its layer options and int8 calibration ranges.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aegis_serve.models.canaries import CanaryError, CanarySet, load_canaries

SPACE_MANIFEST = "aegis_space.json"
CALIBRATION_FILE = "calibration.json"
STANDARD_MATRYOSHKA = (1024, 768, 512, 384, 256, 128, 64)

ACTIVATIONS = {
    "Identity": "identity",
    "Tanh": "tanh",
    "ReLU": "relu",
    "GELU": "gelu",
    "Sigmoid": "sigmoid",
}


class ModelDirError(ValueError):
    """The directory is not a servable Sentence-Transformers model."""


@dataclass(frozen=True)
class DenseSpec:
    """One ST Dense module: linear map plus activation."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass(frozen=True)
class SpaceManifest:
    """Which vector space a model writes into and what it offers in it."""

    space_id: str
    model_id: str
    matryoshka_dims: tuple[int, ...]
    layer_options: tuple[int, ...]
    calibration: dict[int, np.ndarray] = field(default_factory=dict)
    canaries: CanarySet | None = None


@dataclass(frozen=True)
class StModelConfig:
    """Everything needed to rebuild the ST pipeline with transformers + torch."""

    root: Path
    transformer_dir: Path
    pooling_mode: str
    include_prompt: bool
    dense: tuple[DenseSpec, ...]
    normalize: bool
    prompts: dict[str, str]
    default_prompt_name: str | None
    max_seq_length: int | None
    do_lower_case: bool
    manifest_raw: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}: invalid JSON ({exc})") from exc


def _module_kind(type_ref: str) -> str:
    return type_ref.rsplit(".", 1)[-1]


def _pooling_mode(cfg: dict[str, Any]) -> str:
    if isinstance(cfg.get("pooling_mode"), str):
        mode = cfg["pooling_mode"]
    else:
        flags = {
            "cls": cfg.get("pooling_mode_cls_token"),
            "mean": cfg.get("pooling_mode_mean_tokens"),
            "max": cfg.get("pooling_mode_max_tokens"),
            "mean_sqrt_len_tokens": cfg.get("pooling_mode_mean_sqrt_len_tokens"),
            "lasttoken": cfg.get("pooling_mode_lasttoken"),
        }
        chosen = [name for name, on in flags.items() if on]
        if len(chosen) != 1:
            raise ModelDirError(f"unsupported pooling combination {chosen or 'none'}")
        mode = chosen[0]
    if mode not in {"mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens"}:
        raise ModelDirError(f"unsupported pooling mode {mode!r}")
    return mode


def _dense_spec(path: Path) -> DenseSpec:
    cfg = _read_json(path / "config.json")
    act_name = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh")).rsplit(
        ".", 1
    )[-1]
    if act_name not in ACTIVATIONS:
        raise ModelDirError(f"{path}: unsupported Dense activation {act_name}")
    return DenseSpec(
        path=path,
        in_features=int(cfg["in_features"]),
        out_features=int(cfg["out_features"]),
        bias=bool(cfg.get("bias", True)),
        activation=ACTIVATIONS[act_name],
    )


def read_st_config(root: str | Path) -> StModelConfig:
    """Parse modules.json and friends; raise ModelDirError with a clear reason."""
    root = Path(root)
    modules = _read_json(root / "modules.json")
    if not modules:
        raise ModelDirError(f"{root}: no modules.json (not a Sentence-Transformers directory)")
    transformer_dir: Path | None = None
    pooling: dict[str, Any] | None = None
    dense: list[DenseSpec] = []
    normalize = False
    for module in sorted(modules, key=lambda m: int(m["idx"])):
        kind = _module_kind(module["type"])
        path = root / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            pooling = _read_json(path / "config.json")
        elif kind == "Dense":
            dense.append(_dense_spec(path))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ModelDirError(f"{root}: unsupported module type {module['type']}")
    if transformer_dir is None or pooling is None:
        raise ModelDirError(f"{root}: modules.json needs a Transformer and a Pooling module")
    st_cfg = _read_json(transformer_dir / "sentence_bert_config.json")
    top_cfg = _read_json(root / "config_sentence_transformers.json")
    max_len = st_cfg.get("max_seq_length")
    return StModelConfig(
        root=root,
        transformer_dir=transformer_dir,
        pooling_mode=_pooling_mode(pooling),
        include_prompt=bool(pooling.get("include_prompt", True)),
        dense=tuple(dense),
        normalize=normalize,
        prompts={str(k): str(v) for k, v in (top_cfg.get("prompts") or {}).items()},
        default_prompt_name=top_cfg.get("default_prompt_name"),
        max_seq_length=int(max_len) if max_len else None,
        do_lower_case=bool(st_cfg.get("do_lower_case", False)),
        manifest_raw=_read_json(root / SPACE_MANIFEST),
    )


def default_matryoshka_dims(native_dim: int) -> tuple[int, ...]:
    """Native dim plus the standard smaller widths (multiples of 8, so bits pack)."""
    return (native_dim, *(d for d in STANDARD_MATRYOSHKA if d < native_dim))


def _dir_name(root: Path) -> str:
    """Directory name as model id; packaged models sit in a generic `model/` folder."""
    resolved = root.resolve()
    if resolved.name in {"model", "models", "weights"}:
        return resolved.parent.name.replace("_", "-")
    return resolved.name


def build_manifest(cfg: StModelConfig, native_dim: int, num_layers: int) -> SpaceManifest:
    """Resolve the space manifest, defaulting to the model's own space."""
    raw = cfg.manifest_raw
    model_id = str(raw.get("model_id") or _dir_name(cfg.root))
    dims = tuple(sorted({int(d) for d in raw.get("matryoshka_dims", [])}, reverse=True))
    dims = dims or default_matryoshka_dims(native_dim)
    if dims[0] != native_dim or any(d <= 0 or d % 8 for d in dims):
        raise ModelDirError(
            f"{cfg.root}: matryoshka_dims {list(dims)} must start at the native dim "
            f"{native_dim} and be positive multiples of 8"
        )
    layers = tuple(sorted({int(n) for n in raw.get("layer_options", [])}, reverse=True))
    layers = layers or (num_layers,)
    if layers[0] != num_layers or layers[-1] < 1:
        raise ModelDirError(
            f"{cfg.root}: layer_options {list(layers)} must start at the model depth {num_layers}"
        )
    declared_dim = raw.get("dimensions")
    if declared_dim is not None and int(declared_dim) != native_dim:
        raise ModelDirError(
            f"{cfg.root}: manifest says {declared_dim} dims but the model outputs {native_dim}"
        )
    return SpaceManifest(
        space_id=str(raw.get("space_id") or f"{model_id}/{native_dim}"),
        model_id=model_id,
        matryoshka_dims=dims,
        layer_options=layers,
        calibration=load_calibration(cfg.root, dims),
        canaries=_canaries(cfg.root, native_dim),
    )


def _canaries(root: Path, native_dim: int) -> CanarySet | None:
    try:
        return load_canaries(root, native_dim)
    except CanaryError as exc:
        raise ModelDirError(str(exc)) from None


def load_calibration(root: Path, dims: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per-dimension int8 ranges, keyed by Matryoshka width: {dim: array (2, dim)}."""
    raw = _read_json(root / CALIBRATION_FILE)
    out: dict[int, np.ndarray] = {}
    for key, value in (raw.get("ranges") or {}).items():
        dim = int(key)
        ranges = np.asarray([value["min"], value["max"]], dtype=np.float32)
        if dim not in dims or ranges.shape != (2, dim) or np.any(ranges[1] <= ranges[0]):
            raise ModelDirError(f"{root / CALIBRATION_FILE}: bad ranges for dim {dim}")
        out[dim] = ranges
    return out


# ------------------------------------------------------------------ writing (one copy)
MODULE_TYPE = "sentence_transformers.models.{}"
IDENTITY = "torch.nn.modules.linear.Identity"


def weights_fingerprint(model_dir: Path) -> str:
    """Identity of a model's weights: resolved weight files (safetensors and legacy
    PyTorch .bin) with sizes and mtimes.

    Resolved, so a directory that only links to another model's files (a calibrated variant)
    shares the caches keyed by it (teacher embeddings, ONNX exports).
    """
    root = Path(model_dir)
    parts = []
    weights = [*root.rglob("*.safetensors"), *root.rglob("pytorch_model*.bin")]
    for f in sorted(weights):
        real = f.resolve()
        st = real.stat()
        parts.append(f"{f.relative_to(root)}:{real}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def copy_tree(src: Path, dst: Path, skip: frozenset[str] = frozenset()) -> None:
    """Copy a model folder as fresh, writable files (``copyfile``: a read-only package must
    not make the copy read-only), leaving out dot files and the top-level names in ``skip``."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.name in skip:
            continue
        if item.is_dir():
            copy_tree(item, dst / item.name)
        elif not item.name.startswith("."):
            shutil.copyfile(item, dst / item.name)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_modules(out: Path, kinds: list[tuple[str, str]]) -> None:
    """modules.json for the given (module kind, folder) pipeline, in order."""
    write_json(
        out / "modules.json",
        [
            {"idx": i, "name": str(i), "path": path, "type": MODULE_TYPE.format(kind)}
            for i, (kind, path) in enumerate(kinds)
        ],
    )


def write_prompts(out: Path, prompts: dict[str, str]) -> None:
    """config_sentence_transformers.json: prompts, no default prompt, cosine similarity."""
    write_json(
        out / "config_sentence_transformers.json",
        {"prompts": dict(prompts), "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def write_dense(folder: Path, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """An ST Dense module (Identity activation): config.json + model.safetensors."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out_features, in_features = weight.shape
    write_json(
        folder / "config.json",
        {
            "in_features": int(in_features),
            "out_features": int(out_features),
            "bias": bias is not None,
            "activation_function": IDENTITY,
        },
    )
    tensors = {"linear.weight": np.ascontiguousarray(weight)}
    if bias is not None:
        tensors["linear.bias"] = np.ascontiguousarray(bias)
    save_file(tensors, str(folder / "model.safetensors"))
