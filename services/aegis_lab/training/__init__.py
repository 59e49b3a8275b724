"""Training the query student into the document teacher's space (LEAF-style distillation).

Only argument definitions live here, so ``aegis-lab --help`` does not import torch.
"""

from __future__ import annotations

import argparse

# The least-squares Dense map (aegis_serve/models/student.py, fitted by `aegis-lab align`):
# the distilled student's Dense starts from it.
from aegis_serve.models.student import ALIGNED_WEIGHTS as LS_DENSE

# The cross-space score term's forms (losses.matryoshka_loss): listwise KL of the softmaxed
# scores, or Margin-MSE (Hofstätter et al. 2020) of the margins between a text's own teacher
# vector and each other pool row.
SCORE_LOSSES = ("kl", "margin-mse")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``aegis-lab distill`` (shared by ``python -m aegis_lab.training.distill``)."""
    p.add_argument("--teacher", default="builtin:document", help="teacher dir or builtin:document")
    p.add_argument("--student", required=True, help="student ST dir (e.g. the MiniLM package dir)")
    p.add_argument(
        "--corpus",
        default="wordnet",
        help="corpus:NAME (aegis-lab corpus build), a text file (one per line) or 'wordnet'",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--sentences", type=int, default=20000, help="corpus size cap (0 = all)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-fraction", type=float, default=0.06)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--mse-weight", type=float, default=1.0)
    p.add_argument(
        "--contrastive-weight",
        type=float,
        default=0.0,
        help="in-batch InfoNCE against teacher vectors, per Matryoshka dim (0 = pure LEAF)",
    )
    p.add_argument("--negatives", type=int, default=1024, help="extra cached teacher negatives")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--cos-weight", type=float, default=1.0, help="Σ_d (1 - cos) term weight")
    p.add_argument(
        "--score-weight",
        type=float,
        default=0.0,
        help="listwise score distillation per dim: KL(teacher ‖ student) over the negative pool",
    )
    p.add_argument("--score-temperature", type=float, default=0.05)
    p.add_argument(
        "--neighbours",
        type=int,
        default=0,
        help="add each batch text's K nearest corpus texts (by teacher cosine) to the pool",
    )
    p.add_argument(
        "--mined",
        type=int,
        default=0,
        help="add the K teacher rows the student scores highest now (per batch text, searched "
        "over the training texts every step) to the pool: its current confusions",
    )
    p.add_argument(
        "--score-loss",
        choices=SCORE_LOSSES,
        default="kl",
        help="the score term's form: listwise KL, or Margin-MSE of own-vs-other margins",
    )
    p.add_argument(
        "--binary-weight",
        type=float,
        default=0.0,
        help="per dim: the student's soft signs must match the teacher's sign bits (and, with "
        "a score term, the KL over sign-bit scores)",
    )
    p.add_argument(
        "--binary-sharpness",
        type=float,
        default=2.0,
        help="soft sign = tanh(sharpness × √d × component)",
    )
    p.add_argument(
        "--dev-set",
        default="",
        help="'wordnet-dev' or a JSON retrieval set, scored every --eval-every steps (best kept)",
    )
    p.add_argument(
        "--dev-metric",
        choices=("ndcg_at_10", "mean_ndcg_at_10", "mean_float_binary_ndcg_at_10"),
        default="ndcg_at_10",
        help="dev score to keep the best step by: full-dim nDCG@10, its mean over dims, or "
        "the mean over dims of float32 and binary nDCG@10",
    )
    p.add_argument(
        "--student-layers",
        type=int,
        default=0,
        help="keep only the student's first N layers (e.g. --student builtin:document: a "
        "layer-exit student of the teacher); 0 = all",
    )
    p.add_argument(
        "--freeze-word-embeddings",
        action="store_true",
        help="do not train the token embedding table (it can then be shared with the teacher)",
    )
    p.add_argument("--head-lr-multiplier", type=float, default=1.0, help="Dense lr = lr × this")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dense-init", default=str(LS_DENSE), help="Dense init weights ('' = random)")
    p.add_argument("--model-id", default=None)
    p.add_argument("--cache", default=None, help="teacher embedding cache dir")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--max-train-seconds",
        type=float,
        default=None,
        help="fit the schedule to this much training time (over every resumed segment)",
    )
    p.add_argument(
        "--teacher-backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="the teacher's runtime for its cached vectors (auto: onnx on CPU when installed)",
    )
    p.add_argument(
        "--teacher-max-tokens",
        type=int,
        default=0,
        help="cut texts at this many tokens for the teacher (0 = --max-seq-len)",
    )
    p.add_argument(
        "--no-bucket-batches",
        action="store_true",
        help="plain shuffled batches instead of length-bucketed ones",
    )
    p.add_argument(
        "--checkpoint-every-s",
        type=float,
        default=600.0,
        help="write out/checkpoint.pt this often (0 = never)",
    )
    p.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        help="stop after this long with a checkpoint; continue later with --resume",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from out/checkpoint.pt (same flags) instead of starting over",
    )
