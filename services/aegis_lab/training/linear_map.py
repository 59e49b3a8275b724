"""Fit and measure the least-squares Dense map that carries MiniLM into the teacher's space.

Ridge least squares on teacher/student vectors of WordNet texts, refined on the cosine (or an
in-batch contrastive) loss that retrieval uses; the best held-out fit is written as
``assets/aligned-student/dense.safetensors``, which the serving side assembles into the
``builtin:query-linear`` student (``aegis_serve.models.student``). ``aegis-lab align``
reproduces the artifact and measures it on the held-out WordNet retrieval set.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from tqdm import tqdm

from aegis_lab.evaluation.metrics import retrieval_metrics, top_k
from aegis_serve.models.registry_weights import student_base_dir
from aegis_serve.models.student import (
    ALIGNED_MODEL_ID,
    ASSET_DIR,
    file_sha256,
    read_dense_weights,
    write_aligned_student,
)

__all__ = [
    "FitReport",
    "embed_texts",
    "evaluate",
    "fit_linear_map",
    "fit_linear_map_with_report",
    "main",
    "pooled_embedder",
    "write_dense_weights",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ fitting
OBJECTIVES = ("cosine", "contrastive")


@dataclass(frozen=True)
class FitReport:
    """What the fit measured; the held-out split never touches the weights it scores.

    ``*_val_mrr`` is held-out self-retrieval: each held-out student vector, mapped, must find
    its own teacher vector among all held-out teacher vectors (MRR@10).
    """

    objective: str
    ridge: float
    n_train: int
    n_val: int
    ls_train_cosine: float
    ls_val_cosine: float
    ls_val_mrr: float
    refined_val_cosine: float  # of the best refined weights (== LS if none ran)
    refined_val_mrr: float
    refine_steps: int
    best_step: int  # 0: the least-squares solution was kept
    chosen: str  # "least-squares" or "<objective>-refined"
    val_cosine: float  # of the returned map
    val_mrr: float
    seconds: float


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)


def _heldout_scores(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    temperature: float = 0.05,
    k: int = 10,
) -> tuple[float, float, float]:
    """For normalize(x @ w + b) against the unit rows of y: mean cosine, self-retrieval MRR@k
    and the InfoNCE loss over all rows (smooth where the MRR saturates near 1)."""
    pred = _unit_rows(x.astype(np.float64) @ w + b)
    y64 = y.astype(np.float64)
    cos = float(np.mean(np.sum(pred * y64, axis=1)))
    scores = pred @ y64.T
    own = np.diag(scores)
    rank = 1 + np.sum(scores > own[:, None], axis=1)
    mrr = float(np.mean(np.where(rank <= k, 1.0 / rank, 0.0)))
    logits = scores / temperature
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    nce = float(np.mean(lse - own / temperature))
    return cos, mrr, nce


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares with an unpenalised bias (centre, solve, recover the intercept)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    x_mean, y_mean = x64.mean(axis=0), y64.mean(axis=0)
    xc = x64 - x_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += ridge
    w = np.linalg.solve(gram, xc.T @ (y64 - y_mean))
    return w, y_mean - x_mean @ w


def _refine(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    init: tuple[np.ndarray, np.ndarray],
    *,
    objective: str,
    steps: int,
    lr: float,
    temperature: float,
    batch_size: int,
    seed: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Adam from the LS solution on what serving computes, normalize(xW+b); best-on-val weights.

    ``cosine``: full-batch 1 - cos against the teacher vector. Least squares also pays for
    the norm of each prediction, which serving throws away; this spends it all on direction.
    ``contrastive``: InfoNCE over mini-batches, the teacher vectors of the other texts as
    negatives. Retrieval only needs each query to score its own document above the others,
    so this keeps the directions that discriminate and gives up cosine elsewhere.
    """
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_tr).float(), torch.from_numpy(y_tr).float()
    w = torch.tensor(init[0], dtype=torch.float32, requires_grad=True)
    b = torch.tensor(init[1], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))

    def score() -> float:
        """Higher is better: held-out cosine, or minus the held-out InfoNCE loss."""
        cos, _, nce = _heldout_scores(
            x_val, w.detach().double().numpy(), b.detach().double().numpy(), y_val, temperature
        )
        return cos if objective == "cosine" else -nce

    eval_every = 10 if objective == "cosine" else 25
    best = (score(), 0, init[0], init[1])
    bar = tqdm(range(1, steps + 1), desc=f"{objective} refinement", disable=not progress)
    for step in bar:
        if objective == "cosine":
            pred, target = xt @ w + b, yt
            loss = 1.0 - F.cosine_similarity(pred, target, dim=1).mean()
        else:
            idx = torch.randint(0, len(xt), (min(batch_size, len(xt)),), generator=gen)
            pred, target = F.normalize(xt[idx] @ w + b, dim=1), yt[idx]
            logits = pred @ target.T / temperature
            loss = F.cross_entropy(logits, torch.arange(len(idx)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps:
            current = score()
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{current:.4f}")
            if current > best[0]:
                best = (current, step, w.detach().double().numpy(), b.detach().double().numpy())
    return best[2], best[3], best[1]


def fit_linear_map_with_report(
    student_emb: np.ndarray,
    teacher_emb: np.ndarray,
    ridge: float,
    *,
    objective: str = "cosine",
    refine_steps: int = 300,
    lr: float = 1e-3,
    temperature: float = 0.05,
    batch_size: int = 2048,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, FitReport]:
    """Fit y ≈ x @ W + b (W is (in, out)); see ``fit_linear_map``. Also returns the report."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if student_emb.ndim != 2 or teacher_emb.ndim != 2 or len(student_emb) != len(teacher_emb):
        raise ValueError(
            f"need paired 2-D embeddings, got {student_emb.shape} and {teacher_emb.shape}"
        )
    start = time.perf_counter()
    n = len(student_emb)
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    if n_val and n - n_val < 2:
        raise ValueError(f"{n} pairs are too few for a {val_fraction:.0%} held-out split")
    order = np.random.default_rng(seed).permutation(n)
    val_idx, tr_idx = order[:n_val], order[n_val:]
    # One global scale (the mean input norm) so ridge and lr mean the same for pooled or unit
    # inputs; a global factor keeps the map exactly linear and is folded back into W at the end.
    scale = float(np.mean(np.linalg.norm(student_emb[tr_idx], axis=1))) or 1.0
    x_tr, y_tr = student_emb[tr_idx] / scale, teacher_emb[tr_idx]
    x_val, y_val = (student_emb[val_idx] / scale, teacher_emb[val_idx]) if n_val else (x_tr, y_tr)

    w, b = _ridge(x_tr, y_tr, ridge)
    ls_train_cos = _heldout_scores(x_tr[:4096], w, b, y_tr[:4096])[0]
    ls_cos, ls_mrr, _ = _heldout_scores(x_val, w, b, y_val)
    ref_cos, ref_mrr, best_step = ls_cos, ls_mrr, 0
    if refine_steps > 0:
        w_r, b_r, best_step = _refine(
            x_tr,
            y_tr,
            x_val,
            y_val,
            (w, b),
            objective=objective,
            steps=refine_steps,
            lr=lr,
            temperature=temperature,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
        if best_step > 0:
            ref_cos, ref_mrr, _ = _heldout_scores(x_val, w_r, b_r, y_val)
            w, b = w_r, b_r
    val_cos, val_mrr = (ref_cos, ref_mrr) if best_step else (ls_cos, ls_mrr)
    report = FitReport(
        objective=objective,
        ridge=ridge,
        n_train=len(tr_idx),
        n_val=n_val,
        ls_train_cosine=ls_train_cos,
        ls_val_cosine=ls_cos,
        ls_val_mrr=ls_mrr,
        refined_val_cosine=ref_cos,
        refined_val_mrr=ref_mrr,
        refine_steps=refine_steps,
        best_step=best_step,
        chosen=f"{objective}-refined" if best_step else "least-squares",
        val_cosine=val_cos,
        val_mrr=val_mrr,
        seconds=time.perf_counter() - start,
    )
    log.info("linear map fit: %s", report)
    return (w / scale).astype(np.float32), np.asarray(b, dtype=np.float32), report


def fit_linear_map(
    student_emb: np.ndarray,
    teacher_emb: np.ndarray,
    ridge: float,
    *,
    objective: str = "cosine",
    refine_steps: int = 300,
    lr: float = 1e-3,
    temperature: float = 0.05,
    batch_size: int = 2048,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Student (n×d_in) → teacher (n×d_out, unit rows) map: W (d_in, d_out), b (d_out,).

    Pass the vectors the Dense layer will receive: in Pooling → Dense → Normalize that is the
    student's pooled output *before* its Normalize (``pooled_embedder``); with a bias, a map
    fitted on unit vectors is not the same function on pooled ones. Ridge least squares on a
    seeded training split, then ``refine_steps`` Adam steps on ``objective`` (see ``_refine``);
    the refined weights are kept only if they score better on the held-out ``val_fraction``
    (mean cosine for ``cosine``; the InfoNCE loss for ``contrastive``, whose self-retrieval
    MRR@10 is also reported). The held-out
    numbers are logged; ``fit_linear_map_with_report`` returns them.
    """
    w, b, _ = fit_linear_map_with_report(
        student_emb,
        teacher_emb,
        ridge,
        objective=objective,
        refine_steps=refine_steps,
        lr=lr,
        temperature=temperature,
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
    )
    return w, b


# ------------------------------------------------------------------------------ artifact
def write_dense_weights(
    path: Path, w: np.ndarray, b: np.ndarray, metadata: dict[str, Any] | None = None
) -> None:
    """Store the map as an ST Dense state dict: ``linear.weight`` (out, in), ``linear.bias``.

    ``metadata`` values are JSON-encoded into the safetensors header, so the space the map
    targets travels with the weights and the serving directory needs no teacher to build.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "linear.weight": np.ascontiguousarray(w.T, dtype=np.float32),
        "linear.bias": np.ascontiguousarray(b, dtype=np.float32),
    }
    meta = {k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # a committed artifact, readable by the services' users
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ measuring
def pooled_embedder(model_dir: str | Path, device: str = "cpu") -> Any:
    """An Embedder that stops before the final Normalize: what a Dense after Pooling receives."""
    from aegis_serve.models.embedder import Embedder

    embedder = Embedder(model_dir, device=device)
    embedder.cfg = dataclasses.replace(embedder.cfg, normalize=False)
    return embedder


def embed_texts(
    embedder: Any, texts: Sequence[str], label: str, batch_size: int = 64, chunk: int = 512
) -> np.ndarray:
    """Embed with a progress bar; globally length-sorted chunks keep padding small."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=f"embedding {label}", unit="text") as bar:
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            out[idx] = embedder.embed([texts[i] for i in idx], batch_size=batch_size)
            bar.update(len(idx))
    return out


def evaluate(
    aligned_dir: Path,
    teacher_path: Path,
    student_path: Path,
    extra_maps: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Held-out usage→definition retrieval (WordNet, 10k docs, 2k queries), numpy top-10.

    Embeddings live in memory only. ``extra_maps`` (W (in, out), b) are scored on the same
    pooled student vectors, so alternatives cost no extra encoding.
    """
    from aegis_lab.data.wordnet import retrieval_set
    from aegis_serve.models.embedder import Embedder

    queries, docs, relevant = retrieval_set(n_docs=10000, n_queries=2000)
    teacher = Embedder(teacher_path)
    t_docs = embed_texts(teacher, docs, "eval docs (teacher)", batch_size)
    t_q = embed_texts(teacher, queries, "eval queries (teacher)", batch_size)
    del teacher
    student = pooled_embedder(student_path)
    p_docs = embed_texts(student, docs, "eval docs (student)", batch_size)
    p_q = embed_texts(student, queries, "eval queries (student)", batch_size)
    del student
    aligned = Embedder(aligned_dir)
    a_q = embed_texts(aligned, queries, "eval queries (aligned)", batch_size)
    a_docs = embed_texts(aligned, docs, "eval docs (aligned)", batch_size)
    # The served directory must compute exactly the map applied to pooled vectors.
    weight, bias, _ = read_dense_weights(aligned_dir / "2_Dense" / "model.safetensors")
    by_hand = _unit_rows(p_q.astype(np.float64) @ weight.T.astype(np.float64) + bias)
    teacher_top = top_k(t_q, t_docs, 10)
    results: dict[str, Any] = {
        "teacher->teacher": retrieval_metrics(t_q, t_docs, relevant),
        "aligned-student->teacher": retrieval_metrics(a_q, t_docs, relevant, 10, teacher_top),
        "student->student": retrieval_metrics(
            _unit_rows(p_q), _unit_rows(p_docs), relevant, 10, teacher_top
        ),
        "aligned-student->aligned-student": retrieval_metrics(
            a_q, a_docs, relevant, 10, teacher_top
        ),
        # The same texts, whose synsets the fit never saw: cosine with the teacher's vector.
        "heldout_cosine_queries": float(np.mean(np.sum(a_q * t_q, axis=1))),
        "heldout_cosine_docs": float(np.mean(np.sum(a_docs * t_docs, axis=1))),
        "served_vs_by_hand_max_abs_diff": float(np.max(np.abs(a_q - by_hand))),
        "n_docs": len(docs),
        "n_queries": len(queries),
    }
    for name, (w, b) in (extra_maps or {}).items():
        q = _unit_rows(p_q @ w + b).astype(np.float32)
        results[f"{name}->teacher"] = retrieval_metrics(q, t_docs, relevant, 10, teacher_top)
        results[f"{name}_heldout_cosine_queries"] = float(np.mean(np.sum(q * t_q, axis=1)))
    return results


# ------------------------------------------------------------------------------ command
DESCRIPTION = "Fit the student→teacher Dense map on WordNet and write dense.safetensors."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``aegis-lab align``."""
    p.add_argument("--sentences", type=int, default=20000, help="distillation texts to embed")
    p.add_argument("--out", type=Path, default=ASSET_DIR, help="folder for dense.safetensors")
    p.add_argument(
        "--ridge",
        type=float,
        nargs="+",
        default=[0.01, 0.03, 0.1, 1.0],
        help="ridge grid; the best held-out LS cosine wins (inputs scaled to unit mean norm)",
    )
    p.add_argument("--objective", choices=OBJECTIVES, default="contrastive")
    p.add_argument("--refine-steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.05, help="contrastive only")
    p.add_argument("--fit-batch", type=int, default=2048, help="contrastive mini-batch")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch")
    p.add_argument("--device", default="cpu", help="torch device for encoding")
    p.add_argument(
        "--embeddings-cache",
        type=Path,
        default=None,
        help="optional .npz to reuse the corpus embeddings between runs (off by default)",
    )
    p.add_argument("--eval", action="store_true", help="also run the retrieval evaluation")


def _corpus_embeddings(
    args: argparse.Namespace, student_path: Path, teacher_path: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Teacher vectors and the student's pooled vectors of the distillation texts."""
    from aegis_lab.data.wordnet import distillation_sentences, retrieval_synset_ids
    from aegis_serve.models.embedder import Embedder

    texts = distillation_sentences(
        args.sentences, seed=args.seed, exclude_offsets=retrieval_synset_ids()
    )
    if len(texts) < args.sentences:
        raise SystemExit(f"WordNet gives only {len(texts)} distillation texts")
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    cache = args.embeddings_cache
    if cache and cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["key"]) == key:
            print(f"reusing corpus embeddings from {cache}", file=sys.stderr)
            return data["student"], data["teacher"], json.loads(str(data["info"]))
    timings: dict[str, float] = {}
    teacher = Embedder(teacher_path, device=args.device)
    t0 = time.perf_counter()
    t_emb = embed_texts(teacher, texts, "corpus (teacher)", args.batch_size)
    timings["teacher_encode_s"] = time.perf_counter() - t0
    info: dict[str, Any] = {
        # Computed from the loaded teacher, so the aligned student declares exactly its space.
        "space": {
            "space_id": teacher.space.space_id,
            "matryoshka_dims": list(teacher.space.matryoshka_dims),
        },
        "prompts": dict(teacher.prompts),
        "teacher_model_id": teacher.space.model_id,
    }
    del teacher
    student = pooled_embedder(student_path, device=args.device)
    t0 = time.perf_counter()
    s_emb = embed_texts(student, texts, "corpus (student)", args.batch_size)
    timings["student_encode_s"] = time.perf_counter() - t0
    info["student_model_id"] = student.space.model_id
    info["timings"] = timings
    info["mean_chars"] = float(np.mean([len(t) for t in texts]))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=key, student=s_emb, teacher=t_emb, info=json.dumps(info))
    return s_emb, t_emb, info


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in values.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Reproduce ``assets/aligned-student/dense.safetensors`` and print what it measures."""
    parser = argparse.ArgumentParser(prog="aegis-lab align", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv), sys.argv[1:] if argv is None else argv)


def run(args: argparse.Namespace, command_args: Sequence[str]) -> int:
    """`aegis-lab align` with parsed arguments (`command_args` are recorded with the weights)."""
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(args.seed)
    from aegis_serve.models.registry_weights import teacher_dir

    started = time.perf_counter()
    student_path, teacher_path = student_base_dir(), teacher_dir()
    s_emb, t_emb, info = _corpus_embeddings(args, student_path, teacher_path)

    grid: dict[float, tuple[np.ndarray, np.ndarray, FitReport]] = {}
    for ridge in args.ridge:
        grid[ridge] = fit_linear_map_with_report(
            s_emb, t_emb, ridge, refine_steps=0, val_fraction=args.val_fraction, seed=args.seed
        )
        print(
            f"ridge {ridge:g}: held-out LS cosine {grid[ridge][2].val_cosine:.4f}", file=sys.stderr
        )
    best_ridge = max(grid, key=lambda r: grid[r][2].val_cosine)
    w, b, report = fit_linear_map_with_report(
        s_emb,
        t_emb,
        best_ridge,
        objective=args.objective,
        refine_steps=args.refine_steps,
        lr=args.lr,
        temperature=args.temperature,
        batch_size=args.fit_batch,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=True,
    )
    space = {
        "space_id": info["space"]["space_id"],
        "model_id": ALIGNED_MODEL_ID,
        "matryoshka_dims": info["space"]["matryoshka_dims"],
    }
    command = " ".join(command_args)
    metadata = {
        "space": space,
        "prompts": info["prompts"],
        "teacher": info["teacher_model_id"],
        "student": info["student_model_id"],
        "dense_input": "pooled student output, before its Normalize",
        "corpus": {
            "source": "WordNet 3.0 distillation_sentences(seed), retrieval_set synsets held out",
            "sentences": args.sentences,
            "seed": args.seed,
            "mean_chars": round(info["mean_chars"], 1),
        },
        "fit": _rounded(asdict(report)),
        "command": f"aegis-lab align {command}".strip(),
    }
    out = args.out / "dense.safetensors"
    write_dense_weights(out, w, b, metadata)
    result: dict[str, Any] = {
        "weights": str(out),
        "sha256": file_sha256(out),
        "space_id": space["space_id"],
        "fit": asdict(report),
        "ridge_grid_ls_val_cosine": {str(r): grid[r][2].val_cosine for r in grid},
        "encode_timings_s": info.get("timings", {}),
        "fit_command_seconds": time.perf_counter() - started,
    }
    if args.eval:
        ls_w, ls_b, _ = grid[best_ridge]
        with tempfile.TemporaryDirectory() as tmp:
            aligned = write_aligned_student(
                student_path, out, Path(tmp) / "aligned", space, prompts=info["prompts"]
            )
            result["eval"] = evaluate(
                aligned,
                teacher_path,
                student_path,
                {"least-squares-student": (ls_w, ls_b)},
                args.batch_size,
            )
        result["total_seconds"] = time.perf_counter() - started
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
