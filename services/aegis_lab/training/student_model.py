"""The trainable student and the Sentence-Transformers directory it is written back as.

The student is the serving ``Embedder``'s own transformer and pooling with a Dense to the
teacher's width, so what is trained is exactly what the encoder service loads from the output.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from aegis_serve.models.embedder import Embedder
from aegis_serve.models.st_dir import (
    SPACE_MANIFEST,
    read_st_config,
    write_dense,
    write_json,
    write_modules,
    write_prompts,
)

__all__ = ["StudentModel", "load_student", "write_student_dir"]

log = logging.getLogger(__name__)

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "merges.txt",
    "vocab.json",
    "added_tokens.json",
)


class StudentModel(torch.nn.Module):
    """Trainable Transformer → Pooling → Dense of a student directory (normalization in loss)."""

    def __init__(self, embedder: Embedder, out_dim: int, dense_init: Path | None) -> None:
        super().__init__()
        self.emb = embedder
        self.transformer = embedder.model
        hidden = int(embedder.hf_config.hidden_size)
        if embedder.dense:
            if len(embedder.dense) != 1 or embedder.dense[0][1] != "identity":
                raise ValueError("only a student with one identity Dense (or none) is supported")
            self.dense: torch.nn.Linear | None = embedder.dense[0][0]
        elif hidden != out_dim:
            self.dense = torch.nn.Linear(hidden, out_dim)
            if dense_init is not None and dense_init.is_file():
                state = {
                    k.removeprefix("linear."): v for k, v in load_file(str(dense_init)).items()
                }
                if tuple(state["weight"].shape) == (out_dim, hidden):
                    self.dense.load_state_dict(state)
                    log.info("Dense initialised from %s", dense_init)
                else:
                    log.info(
                        "%s has shape %s; Dense starts random", dense_init, state["weight"].shape
                    )
        else:
            self.dense = None
        self.out_dim = out_dim if self.dense is not None else hidden

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        pooled = self.emb._pool(hidden.float(), batch["pool_mask"], batch["attention_mask"])
        return self.dense(pooled) if self.dense is not None else pooled


def load_student(
    student_dir: Path,
    out_dim: int,
    device: str,
    *,
    layers: int = 0,
    dense_init: Path | None = None,
    freeze_word_embeddings: bool = False,
) -> StudentModel:
    """The student of ``student_dir`` on ``device``, cut to its first ``layers`` (0: all), with
    a Dense to ``out_dim`` (started from ``dense_init`` when its shape fits)."""
    student_emb = Embedder(student_dir, device=device, dtype="float32")
    if layers:
        try:
            student_emb.keep_first_layers(layers)
        except ValueError:
            raise ValueError(
                f"--student-layers {layers}: the student has {student_emb.num_layers} layers"
            ) from None
    model = StudentModel(student_emb, out_dim, dense_init).to(device)
    if freeze_word_embeddings:
        model.transformer.get_input_embeddings().weight.requires_grad_(False)
    if model.out_dim != out_dim:
        raise ValueError(f"student outputs {model.out_dim} dims, teacher {out_dim}")
    return model


def _batch(emb: Embedder, texts: Sequence[str], prompt: str, max_len: int) -> dict[str, Any]:
    """Padded training batch; ids beyond ``max_len`` are cut, keeping the closing token."""
    items = emb.tokenize(texts, prompt)
    cut = []
    for it in items:
        if len(it.ids) > max_len:
            it = type(it)(
                ids=it.ids[: max_len - 1] + it.ids[-1:],
                prompt_tokens=min(it.prompt_tokens, max_len - 2),
                original_tokens=it.original_tokens,
                truncated=True,
            )
        cut.append(it)
    batch = emb._collate_padded(cut)
    return {k: v.to(emb.device) for k, v in batch.items()}


def write_student_dir(
    model: StudentModel,
    student_dir: Path,
    out: Path,
    space: dict[str, Any],
    prompts: dict[str, str],
) -> Path:
    """ST directory: fp16 transformer at the root, Pooling copied, fp32 Dense, Normalize.

    Same layout as ``align.write_aligned_student`` (modules 0..3, teacher prompts, space
    manifest), but every file is a real copy so the directory can be committed or shipped.
    """
    base = read_st_config(student_dir)
    out.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model.transformer).to(torch.float16)
    half.save_pretrained(str(out), safe_serialization=True)
    for name in _TOKENIZER_FILES:
        src = base.transformer_dir / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    sbert = student_dir / "sentence_bert_config.json"
    if sbert.is_file():
        shutil.copyfile(sbert, out / "sentence_bert_config.json")
    modules = json.loads((student_dir / "modules.json").read_text())
    pooling_rel = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    shutil.copytree(student_dir / pooling_rel, out / "1_Pooling", dirs_exist_ok=True)
    kinds = [("Transformer", ""), ("Pooling", "1_Pooling")]
    if model.dense is not None:
        lin = model.dense
        bias = lin.bias.detach().float().cpu().numpy() if lin.bias is not None else None
        write_dense(out / "2_Dense", lin.weight.detach().float().cpu().numpy(), bias)
        kinds.append(("Dense", "2_Dense"))
    norm = out / f"{len(kinds)}_Normalize"
    norm.mkdir(exist_ok=True)
    kinds.append(("Normalize", norm.name))
    write_modules(out, kinds)
    write_prompts(out, prompts)
    write_json(out / SPACE_MANIFEST, {**space, "dimensions": model.out_dim})
    return out


def write_layer_exit(teacher_dir: Path, layers: int, out: Path, model_id: str = "") -> Path:
    """The teacher's first ``layers`` layers (its embeddings, pooling and space), untrained, as
    a student directory: a depth probe of the frontier, and the start of a layer-exit
    distillation (``--student-layers``)."""
    teacher = Embedder(teacher_dir, dtype="float32")
    try:
        teacher.keep_first_layers(layers)
    except ValueError:
        raise ValueError(
            f"--layers {layers}: the teacher has {teacher.num_layers} layers"
        ) from None
    space = {
        "space_id": teacher.space.space_id,
        "model_id": model_id or f"{teacher.space.model_id}-exit{layers}",
        "matryoshka_dims": list(teacher.space.matryoshka_dims),
    }
    model = StudentModel(teacher, teacher.dim, None).eval()
    return write_student_dir(model, teacher_dir, out, space, dict(teacher.prompts))
