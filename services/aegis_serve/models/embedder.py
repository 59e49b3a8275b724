"""The Sentence-Transformers pipeline rebuilt on plain transformers + torch.

Transformer → Pooling → Dense* → Normalize, with 2D-Matryoshka early exit (run only the
first k layers, then the model's own final norm, then pooling). The class is not
thread-safe for `forward`: the encoder service runs every forward on one model thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModel, AutoTokenizer

from aegis_serve.models.st_dir import (
    DenseSpec,
    ModelDirError,
    SpaceManifest,
    StModelConfig,
    build_manifest,
    read_st_config,
)
from aegis_serve.settings import BACKENDS

if TYPE_CHECKING:
    from aegis_serve.models.onnx_runtime import OnnxEncoder

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# torch: the model as loaded; torch-int8: torch dynamic int8 Linear layers (CPU);
# onnx / onnx-int8: the transformer run by ONNX Runtime (CPU, full depth; models/onnx_runtime.py).
_ACT = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
}
# Attribute paths of the layer list in the encoder families we serve.
_LAYER_LISTS = ("layers", "encoder.layer", "encoder.layers", "transformer.layer")


def packs_batch(attention: str, lengths: Sequence[int]) -> bool:
    """Whether one batch (its texts' token counts) runs packed, under a resolved attention
    mode (`Embedder.attention`): `packed` always, `padded` never, and `auto` per batch:
    several texts run packed, a lone text runs padded.

    Why that rule (one H200, aegis-embed shape, docs/benchmarks.md): packing wins where a
    padded batch would waste work on padding and on the sliding-window layers' masked scores,
    i.e. many texts of mixed lengths (606 vs 410 docs/s); a lone text has no padding to save,
    and there SDPA's fused kernel beats FlexAttention (p50 72 vs 97 ms at 8K tokens, 451 vs
    733 ms at 32K). The batcher plans `auto` batches like packed ones (by real tokens), so a
    long text that fills the token budget gets a batch of its own and runs padded.
    """
    if attention == "auto":
        return len(lengths) > 1
    return attention == "packed"


@dataclass(frozen=True)
class TokenizedText:
    """One text after the prompt is applied and the tokenizer has run."""

    ids: list[int]
    prompt_tokens: int  # leading tokens excluded from pooling (include_prompt=False)
    original_tokens: int  # length before truncation
    truncated: bool


@dataclass(frozen=True)
class TokenDetail:
    """Token with offsets in the caller's text (prompt tokens flagged special)."""

    id: int
    text: str
    start: int
    stop: int
    special: bool


def _dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights for every Linear, activations quantized per call (CPU only)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's move-to-torchao notice
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _resolve_attr(obj: object, dotted: str) -> object | None:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class Embedder:
    """A loaded model directory: tokenizer, transformer, pooling head and its space."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        threads: int | None = None,
        attn_implementation: str | None = "sdpa",
        attention: str = "auto",
        backend: str = "torch",
    ) -> None:
        self.cfg: StModelConfig = read_st_config(model_dir)
        if backend not in BACKENDS:
            raise ModelDirError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        if backend != "torch" and (device != "cpu" or dtype not in (None, "float32")):
            raise ModelDirError(f"backend {backend!r} runs on cpu in float32 only")
        self.backend = backend
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelDirError(f"device {device!r} requested but CUDA is not available")
        self.device = torch.device(device)
        dtype = dtype or ("bfloat16" if self.device.type == "cuda" else "float32")
        if dtype not in DTYPES:
            raise ModelDirError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        if threads:
            torch.set_num_threads(threads)
        self.model = self._load_transformer(attn_implementation)
        if backend == "torch-int8":
            self.model = _dynamic_int8(self.model)
        self.hf_config = self.model.config
        self._padded_attn = self.hf_config._attn_implementation
        self.attention = self._resolve_attention(attention)
        # The batcher plans by real tokens (no padding bucketing) whenever batches may pack.
        self.packs_sequences = self.attention != "padded"
        self.num_layers = int(self.hf_config.num_hidden_layers)
        self._layer_owner, self._layer_attr, self._layers = self._find_layers()
        self.dense = [self._load_dense(spec) for spec in self.cfg.dense]
        self.dim = self.cfg.dense[-1].out_features if self.cfg.dense else self.hf_config.hidden_size
        self.space: SpaceManifest = build_manifest(self.cfg, self.dim, self.num_layers)
        self._load_tokenizer()
        self.prompts = dict(self.cfg.prompts)
        self._prompt_len_cache: dict[str, int] = {}
        self._onnx = self._load_onnx(threads) if backend.startswith("onnx") else None

    # ---------------------------------------------------------------- loading
    def _load_transformer(self, attn_implementation: str | None) -> torch.nn.Module:
        kwargs = {"dtype": self.dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        path = str(self.cfg.transformer_dir)
        try:
            model = AutoModel.from_pretrained(path, **kwargs)
        except (ValueError, ImportError) as exc:
            if not attn_implementation:
                raise
            log.debug("attention %s unavailable (%s); using the default", attn_implementation, exc)
            kwargs.pop("attn_implementation")
            model = AutoModel.from_pretrained(path, **kwargs)
        return model.to(self.device).eval()

    def _load_onnx(self, threads: int | None) -> OnnxEncoder:
        from aegis_serve.models.onnx_runtime import OnnxEncoder, prepared_model

        if len(self.space.layer_options) > 1:
            raise ModelDirError(
                f"backend {self.backend!r} serves full depth only; this model offers layer exit "
                f"{list(self.space.layer_options)}: use the torch backend"
            )
        path = prepared_model(self.model, self.cfg.transformer_dir, self.backend, self.max_tokens)
        return OnnxEncoder(path, threads)

    def _resolve_attention(self, attention: str) -> str:
        """`packed`, `padded`, or `auto` (packed or padded per batch: `packs_batch`). `auto`
        stays per batch for ModernBERT on CUDA, where FlexAttention is compiled; elsewhere
        it is `padded` (on CPU, FlexAttention runs unfused and is slower than SDPA)."""
        if attention not in {"auto", "packed", "padded"}:
            raise ModelDirError(f"attention must be auto, packed or padded, not {attention!r}")
        is_modernbert = self.hf_config.model_type == "modernbert"
        if attention == "packed" and not is_modernbert:
            raise ModelDirError("packed attention is implemented for ModernBERT models only")
        if attention == "auto" and not (is_modernbert and self.device.type == "cuda"):
            attention = "padded"
        if attention != "padded":
            from aegis_serve.models import packed_attention

            packed_attention.register()
            if attention == "packed":
                self.hf_config._attn_implementation = packed_attention.ATTN_NAME
        return attention

    def _find_layers(self) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
        for dotted in _LAYER_LISTS:
            found = _resolve_attr(self.model, dotted)
            if isinstance(found, torch.nn.ModuleList) and len(found) == self.num_layers:
                owner_path, _, attr = dotted.rpartition(".")
                owner = _resolve_attr(self.model, owner_path) if owner_path else self.model
                return owner, attr, found  # type: ignore[return-value]
        raise ModelDirError(
            f"cannot find the layer list of {type(self.model).__name__} for layer exit"
        )

    def _load_dense(self, spec: DenseSpec) -> tuple[torch.nn.Linear, str]:
        linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
        weights_file = spec.path / "model.safetensors"
        if weights_file.exists():
            state = load_file(str(weights_file))
        else:
            legacy = spec.path / "pytorch_model.bin"
            if not legacy.exists():
                raise ModelDirError(f"{spec.path}: Dense weights missing")
            state = torch.load(legacy, map_location="cpu", weights_only=True)
        state = {k.removeprefix("linear."): v for k, v in state.items()}
        linear.load_state_dict(state)
        # The head runs in float32: it is tiny and keeps pooling precision.
        return linear.to(self.device).eval(), spec.activation

    def _load_tokenizer(self) -> None:
        hf_tok = AutoTokenizer.from_pretrained(str(self.cfg.transformer_dir))
        if not getattr(hf_tok, "is_fast", False):
            raise ModelDirError("a fast (Rust) tokenizer is required")
        limits = [
            self.cfg.max_seq_length,
            hf_tok.model_max_length if hf_tok.model_max_length < 1_000_000 else None,
            self._position_limit(),
        ]
        self.max_tokens = min(x for x in limits if x)
        self.pad_id = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
        serialized = hf_tok.backend_tokenizer.to_str()
        self._tok_full = Tokenizer.from_str(serialized)
        self._tok_full.no_padding()
        self._tok_full.no_truncation()
        self._tok_trunc = Tokenizer.from_str(serialized)
        self._tok_trunc.no_padding()
        self._tok_trunc.enable_truncation(self.max_tokens)
        self._serialized_tokenizer = serialized
        self._tok_capped: dict[int, Tokenizer] = {}
        self.hf_tokenizer = hf_tok

    def _position_limit(self) -> int | None:
        limit = getattr(self.hf_config, "max_position_embeddings", None)
        if not limit:
            return None
        offset = getattr(self.hf_config, "pad_token_id", None)
        # RoBERTa/MPNet reserve padding_idx + 1 positions at the start of the table.
        if self.hf_config.model_type in {"roberta", "xlm-roberta", "mpnet", "camembert"}:
            return int(limit) - (int(offset or 0) + 1)
        return int(limit)

    # ------------------------------------------------------------ tokenizing
    def prompt_for(self, prompt_name: str | None) -> str:
        """Prompt text by name; '' for none. Unknown names raise KeyError."""
        if not prompt_name:
            return ""
        return self.prompts[prompt_name]

    def _prompt_tokens(self, prompt: str) -> int:
        if not prompt or self.cfg.include_prompt:
            return 0
        if prompt not in self._prompt_len_cache:
            # As sentence-transformers: tokens of the prompt alone minus the final special token.
            self._prompt_len_cache[prompt] = len(self._tok_full.encode(prompt).ids) - 1
        return self._prompt_len_cache[prompt]

    def _prepare(self, texts: Sequence[str], prompt: str) -> list[str]:
        out = [prompt + t for t in texts] if prompt else list(texts)
        if self.cfg.do_lower_case:
            out = [t.lower() for t in out]
        return out

    def _truncating(self, max_tokens: int | None) -> Tokenizer:
        """A tokenizer cutting at `max_tokens` (a serving cap below the model's limit)."""
        if not max_tokens or max_tokens >= self.max_tokens:
            return self._tok_trunc
        tok = self._tok_capped.get(max_tokens)
        if tok is None:
            tok = Tokenizer.from_str(self._serialized_tokenizer)
            tok.no_padding()
            tok.enable_truncation(max_tokens)
            self._tok_capped[max_tokens] = tok
        return tok

    def tokenize(
        self, texts: Sequence[str], prompt: str = "", max_tokens: int | None = None
    ) -> list[TokenizedText]:
        """Token ids per text, truncated to max_tokens (default and ceiling: the model's)."""
        encodings = self._truncating(max_tokens).encode_batch(self._prepare(texts, prompt))
        prompt_tokens = self._prompt_tokens(prompt)
        out = []
        for enc in encodings:
            extra = sum(len(o.ids) for o in enc.overflowing)
            # Overflow windows repeat the special tokens; count only the content they carry.
            specials = sum(enc.special_tokens_mask)
            extra_content = max(0, extra - specials * len(enc.overflowing))
            out.append(
                TokenizedText(
                    ids=list(enc.ids),
                    prompt_tokens=prompt_tokens,
                    original_tokens=len(enc.ids) + extra_content,
                    truncated=bool(enc.overflowing),
                )
            )
        return out

    def token_details(self, texts: Sequence[str], prompt: str = "") -> list[list[TokenDetail]]:
        """Untruncated tokens with offsets mapped back onto the caller's text."""
        shift = len(prompt)
        details = []
        for enc in self._tok_full.encode_batch(self._prepare(texts, prompt)):
            row = []
            for tid, tok, (start, stop), special in zip(
                enc.ids, enc.tokens, enc.offsets, enc.special_tokens_mask, strict=True
            ):
                in_prompt = stop <= shift and not special
                s, e = (max(0, start - shift), max(0, stop - shift))
                row.append(
                    TokenDetail(
                        id=tid,
                        text=tok,
                        start=0 if special or in_prompt else s,
                        stop=0 if special or in_prompt else e,
                        special=bool(special) or in_prompt,
                    )
                )
            details.append(row)
        return details

    def keep_first_layers(self, layers: int) -> None:
        """Drop every layer after the first ``layers`` for good, in the config too, so a model
        saved from here loads at that depth (a layer-exit student of a deeper model; ``layers=``
        in ``forward`` only skips them for one call). Layer options deeper than that go."""
        if not 0 < layers <= self.num_layers:
            raise ValueError(f"cannot keep {layers} layers: the model has {self.num_layers}")
        self._layers = self._layers[:layers]
        setattr(self._layer_owner, self._layer_attr, self._layers)
        self.hf_config.num_hidden_layers = self.num_layers = layers
        shallower = [n for n in self.space.layer_options if n < layers]
        self.space = replace(self.space, layer_options=(layers, *shallower))

    # -------------------------------------------------------------- forward
    @contextlib.contextmanager
    def _depth(self, layers: int) -> Iterator[None]:
        """Run only the first `layers` layers (2D Matryoshka); restores the full list after."""
        if layers in (0, self.num_layers):
            yield
            return
        setattr(self._layer_owner, self._layer_attr, self._layers[:layers])
        try:
            yield
        finally:
            setattr(self._layer_owner, self._layer_attr, self._layers)

    def collate(self, items: Sequence[TokenizedText]) -> object:
        """CPU tensors for one batch: packed into one sequence, or right-padded
        (`packs_batch` decides)."""
        if packs_batch(self.attention, [len(it.ids) for it in items]):
            from aegis_serve.models.packed_attention import pack

            return pack([it.ids for it in items], [it.prompt_tokens for it in items], self.pad_id)
        return self._collate_padded(items)

    def _collate_padded(self, items: Sequence[TokenizedText]) -> dict[str, torch.Tensor]:
        """Right-padded CPU tensors (pinned when the model is on CUDA)."""
        width = max(len(it.ids) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        pool_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it.ids)
            ids[row, :n] = torch.tensor(it.ids, dtype=torch.long)
            mask[row, :n] = 1
            pool_mask[row, it.prompt_tokens : n] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "pool_mask": pool_mask}
        if self.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    @torch.inference_mode()
    def forward(self, batch: object, layers: int = 0) -> np.ndarray:
        """Embed one collated batch; returns float32 (n, dim), L2-normalized if the model is."""
        if layers and layers not in self.space.layer_options:
            raise ValueError(
                f"layers={layers} not offered; choose {list(self.space.layer_options)}"
            )
        if not isinstance(batch, dict):  # a PackedBatch (collate packed it)
            emb = self._forward_packed(batch, layers)
        else:
            self._set_attention(self._padded_attn)
            dev = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            if self._onnx is not None:  # full depth only (checked at load)
                hidden = self._onnx(dev["input_ids"], dev["attention_mask"])
            else:
                with self._depth(layers):
                    hidden = self.model(
                        input_ids=dev["input_ids"], attention_mask=dev["attention_mask"]
                    ).last_hidden_state
            emb = self._pool(hidden.float(), dev["pool_mask"], dev["attention_mask"])
        return self._head(emb)

    def _set_attention(self, name: str | None) -> None:
        """`auto` switches the model's attention function per batch (forwards run on one
        thread, so the shared config is never switched under a running forward)."""
        if self.attention == "auto" and self.hf_config._attn_implementation != name:
            self.hf_config._attn_implementation = name

    def _forward_packed(self, batch: object, layers: int) -> torch.Tensor:
        from aegis_serve.models.packed_attention import ATTN_NAME, block_mask, pool

        self._set_attention(ATTN_NAME)
        dev = self.device
        doc_ids = batch.doc_ids.to(dev, non_blocking=True)
        masks = {
            "full_attention": block_mask(batch, doc_ids, None),
            "sliding_attention": block_mask(batch, doc_ids, self.hf_config.sliding_window),
        }
        with self._depth(layers):
            hidden = self.model(
                input_ids=batch.input_ids.to(dev, non_blocking=True),
                position_ids=batch.position_ids.to(dev, non_blocking=True),
                attention_mask=masks,
            ).last_hidden_state[0]
        return pool(hidden, batch, self.cfg.pooling_mode, dev)

    def _head(self, emb: torch.Tensor) -> np.ndarray:
        """Dense layers and normalization, in float32."""
        for linear, act in self.dense:
            emb = _ACT[act](linear(emb))
        if self.cfg.normalize:
            emb = F.normalize(emb, p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def _pool(
        self, hidden: torch.Tensor, pool_mask: torch.Tensor, attn: torch.Tensor
    ) -> torch.Tensor:
        mode = self.cfg.pooling_mode
        if mode == "cls":
            return hidden[:, 0]
        if mode == "lasttoken":
            last = attn.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        m = pool_mask.unsqueeze(-1).to(hidden.dtype)
        if mode == "max":
            return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
        total = (hidden * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1e-9)
        if mode == "mean_sqrt_len_tokens":
            return total / count.sqrt()
        return total / count

    def embed(
        self,
        texts: Sequence[str],
        prompt_name: str | None = None,
        layers: int = 0,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Convenience in-process encode (sorted by length, like ST's encode)."""
        items = self.tokenize(texts, self.prompt_for(prompt_name))
        order = sorted(range(len(items)), key=lambda i: -len(items[i].ids))
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self.forward(self.collate([items[i] for i in chunk]), layers)
        return out

    @property
    def device_label(self) -> str:
        """Where and how the model runs, as GetInfo reports it (e.g. 'cpu (onnx-int8)')."""
        return str(self.device) if self.backend == "torch" else f"{self.device} ({self.backend})"

    def describe(self) -> dict[str, object]:
        return {
            "model": self.space.model_id,
            "space_id": self.space.space_id,
            "dimensions": self.dim,
            "matryoshka_dims": list(self.space.matryoshka_dims),
            "layer_options": list(self.space.layer_options),
            "max_tokens": self.max_tokens,
            "device": str(self.device),
            "dtype": self.dtype_name,
            "backend": self.backend,
            **({"onnx_graph": self._onnx.graph} if self._onnx is not None else {}),
            "attention": self.attention,
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
        }


def load_config_only(model_dir: str | Path) -> AutoConfig:
    """The HF config of a directory's Transformer module (cheap; no weights)."""
    return AutoConfig.from_pretrained(str(read_st_config(model_dir).transformer_dir))
