"""Canaries: texts with the reference vectors their model produced when it was built.

A declared `space_id` is only a name: a replica that serves other weights (a broken export,
a wrong image, a mislabelled directory) passes any check of names. The vectors do not lie, so
each model directory carries `canaries.json` (written by `aegis-lab canaries` and by every
student build), each encoder hands it out in GetInfo, and the gateway embeds the texts
through each replica and compares (gateway/canary.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aegis.encoder.v1 import encoder_pb2

CANARIES_FILE = "canaries.json"

# Short and mixed on purpose: questions, keyword queries, definitions and passages, in a few
# languages, the kinds of text both pools see. Sixteen keep a check at one small batch.
DEFAULT_CANARY_TEXTS: tuple[str, ...] = (
    "how do plants make food from sunlight?",
    "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen.",
    "why is the sky blue",
    "Rayleigh scattering makes short blue wavelengths dominate the daytime sky.",
    "capital of France",
    "Paris is the capital and largest city of France.",
    "a domesticated carnivorous mammal kept as a pet that purrs",
    "The cat is a small domesticated carnivore.",
    "How do I undo the last git commit?",
    "Run git reset --soft HEAD~1 to undo the last commit and keep its changes staged.",
    "symptoms of vitamin D deficiency",
    "Low vitamin D can cause fatigue, bone pain and muscle weakness.",
    "¿Cuál es el río más largo del mundo?",
    "Der Rhein fließt von den Alpen bis zur Nordsee.",
    "speed of light in vacuum",
    "Light travels through a vacuum at about 299,792 kilometres per second.",
)


class CanaryError(ValueError):
    """A canaries file that cannot be used (the message names the file and the problem)."""


@dataclass(frozen=True)
class CanarySet:
    """Texts and their reference vectors (rows L2-normalized float32)."""

    texts: tuple[str, ...]
    vectors: np.ndarray
    prompt_name: str = ""

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode() + b"\0")
        h.update(self.prompt_name.encode() + b"\0")
        h.update(np.ascontiguousarray(self.vectors, dtype="<f4").tobytes())
        return h.hexdigest()

    def to_proto(self) -> encoder_pb2.Canaries:
        return encoder_pb2.Canaries(
            texts=list(self.texts),
            vectors=np.ascontiguousarray(self.vectors, dtype="<f4").tobytes(),
            dimensions=int(self.vectors.shape[1]),
            prompt_name=self.prompt_name,
            digest=self.digest,
        )

    @classmethod
    def from_proto(cls, msg: encoder_pb2.Canaries) -> CanarySet | None:
        """The set a replica sent, or None when it sent none or a malformed one."""
        n, dims = len(msg.texts), int(msg.dimensions)
        if not n or not dims or len(msg.vectors) != n * dims * 4:
            return None
        vectors = np.frombuffer(msg.vectors, dtype="<f4").reshape(n, dims).astype(np.float32)
        return cls(tuple(msg.texts), vectors, msg.prompt_name)

    def to_json(self, **extra: object) -> str:
        return json.dumps(
            {
                **extra,
                "prompt_name": self.prompt_name,
                "digest": self.digest,
                "texts": list(self.texts),
                "vectors": [[round(float(x), 7) for x in row] for row in self.vectors],
            },
            ensure_ascii=False,
        )


def normalized(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b`."""
    return np.sum(normalized(a) * normalized(b), axis=1)


def agreement_margin(vectors: np.ndarray, references: np.ndarray) -> float:
    """How much more each text's vector agrees with its own reference than with the other
    texts' references: mean matched cosine minus mean unmatched cosine. Two encoders of one
    space score well above 0 (a 2-layer student against its teacher: ~0.5, the teacher
    itself ~0.9); a model from another space scores ~0 whatever its vectors' overall bias."""
    sims = normalized(vectors) @ normalized(references).T
    n = sims.shape[0]
    matched = float(np.trace(sims)) / n
    unmatched = (float(sims.sum()) - float(np.trace(sims))) / max(1, n * n - n)
    return matched - unmatched


def load_canaries(root: Path, native_dim: int) -> CanarySet | None:
    """`root/canaries.json`, checked against the model's native dimension; None if absent."""
    path = Path(root) / CANARIES_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        texts = tuple(str(t) for t in raw["texts"])
        vectors = np.asarray(raw["vectors"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CanaryError(f"{path}: unreadable canaries ({exc})") from None
    if not texts or any(not t for t in texts):
        raise CanaryError(f"{path}: needs non-empty texts")
    if vectors.shape != (len(texts), native_dim):
        raise CanaryError(
            f"{path}: vectors are {vectors.shape}, expected ({len(texts)}, {native_dim})"
        )
    return CanarySet(texts, normalized(vectors), str(raw.get("prompt_name", "")))
