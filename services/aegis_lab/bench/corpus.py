"""Deterministic benchmark corpora with known token lengths."""

from __future__ import annotations

import numpy as np


def word_tokens(tokenizer) -> list[int]:
    """Ids of vocabulary entries that are whole words (so decode → encode keeps the count)."""
    vocab = tokenizer.get_vocab()
    ids = [i for tok, i in vocab.items() if tok.startswith(("Ġ", "▁")) and tok[1:].isalpha()]
    if len(ids) < 50:  # WordPiece-style vocabularies: plain alphabetic entries
        ids = [i for tok, i in vocab.items() if tok.isalpha() and len(tok) > 2]
    return sorted(ids)


def text_of_length(tokenizer, n_tokens: int, rng: np.random.Generator, pool: list[int]) -> str:
    """A text of about n_tokens tokens (special tokens included)."""
    ids = rng.choice(pool, size=max(1, n_tokens - 2))
    return tokenizer.decode(ids.tolist()).strip()


def mixed_lengths(n: int, low: int, high: int, seed: int = 0) -> list[int]:
    """Log-uniform lengths: many short texts, a long tail, as real document chunks are."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(low), np.log(high), size=n)).astype(int).tolist()


def make_corpus(tokenizer, lengths: list[int], seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    pool = word_tokens(tokenizer)
    return [text_of_length(tokenizer, n, rng, pool) for n in lengths]
