"""The oracle: distinct texts and their reference vectors, computed in-process.

Every request in a scenario carries texts no other request carries, so a vector that came
back for the wrong text (swapped rows, a reply routed to the wrong caller) cannot match.
References come from the same model directory loaded in this process (independent of the
service under test); a served vector is right when its cosine with the reference of its
own text is at least MIN_COSINE. Batching and padding change float rounding slightly, so
exact equality is not expected; distinct texts of random words sit far below that cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aegis_lab.bench.corpus import make_corpus, mixed_lengths

MIN_COSINE = 0.9999


@dataclass
class Oracle:
    """Texts (one list per request) and a reference vector per text."""

    requests: list[list[str]]
    reference: dict[str, np.ndarray]

    def check(self, texts: list[str], vectors: np.ndarray) -> int:
        """How many rows are wrong or missing for these texts (0 = all correct)."""
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            return len(texts)
        wrong = 0
        for text, row in zip(texts, vectors, strict=True):
            ref = self.reference[text]
            norm = float(np.linalg.norm(row)) * float(np.linalg.norm(ref))
            if not norm or float(np.dot(row, ref)) / norm < MIN_COSINE:
                wrong += 1
        return wrong


class ReferenceModel:
    """The served model dir, loaded once in this process to compute references."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        from aegis_serve.models.embedder import Embedder

        self.embedder = Embedder(model_dir, threads=threads)

    def oracle(
        self, n_requests: int, texts_per_request: int, seed: int, tokens: tuple[int, int]
    ) -> Oracle:
        """Distinct random-word texts (lengths log-uniform in `tokens`) and their vectors."""
        n = n_requests * texts_per_request
        lengths = mixed_lengths(n, tokens[0], tokens[1], seed=seed)
        texts = make_corpus(self.embedder.hf_tokenizer, lengths, seed=seed)
        texts = [f"{i} {t}" for i, t in enumerate(texts)]  # distinct even if words repeat
        vectors = self.embedder.embed(texts)
        requests = [texts[i : i + texts_per_request] for i in range(0, n, texts_per_request)]
        return Oracle(requests, dict(zip(texts, vectors, strict=True)))
