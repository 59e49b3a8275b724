"""Building and searching an index through a gateway: documents go to the DOCUMENT pool once
(full-dim float32; the index cuts and quantizes them itself), queries to the QUERY pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aegis_client.client import EmbedClient
from aegis_client.index.store import (
    AsymmetricIndex,
    IndexSpec,
    SearchResult,
)

__all__ = ["build_index", "embed_all", "search_texts"]

DEFAULT_BATCH_SIZE = 64


def embed_all(
    client: EmbedClient,
    texts: Sequence[str],
    input_type: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, str]]:
    """Full-dim float32 vectors of ``texts`` (one request per batch) and the space they are
    in (``space_id``, ``model``); a space change between batches is an error."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: list[np.ndarray] = []
    space: dict[str, str] = {}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), unit="text", desc=f"embedding {input_type}s")
    try:
        for start in range(0, len(texts), batch_size):
            result = client.embed(list(texts[start : start + batch_size]), input_type)
            seen = {"space_id": result.space_id, "model": result.model}
            if space and seen["space_id"] != space["space_id"]:
                raise ValueError(
                    f"the service's space changed while embedding ({space['space_id']} -> "
                    f"{seen['space_id']}); build the index again"
                )
            space = space or seen
            parts.append(result.embeddings)
            if bar is not None:
                bar.update(len(result.embeddings))
    finally:
        if bar is not None:
            bar.close()
    if not parts:
        return np.zeros((0, 0), dtype=np.float32), space
    return np.concatenate(parts), space


def build_index(
    client: EmbedClient,
    texts: Sequence[str],
    spec: IndexSpec,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> AsymmetricIndex:
    """Embed ``texts`` as documents and index them (key i = texts[i])."""
    if not texts:
        raise ValueError("no documents to index")
    info = client.info()
    offered = list(info.matryoshka_dimensions)
    # A rotated index projects to any dims; the first dims are only meaningful at a Matryoshka
    # dim of the space.
    if spec.dims and offered and spec.dims not in offered and not spec.rotates(info.dimensions):
        raise ValueError(
            f"dims={spec.dims} is not offered by this space; choose one of {offered} "
            "(or let the index rotate)"
        )
    vectors, space = embed_all(client, texts, "document", batch_size, progress)
    return AsymmetricIndex.from_vectors(
        vectors, spec, {"document_" + k: v for k, v in space.items()}
    )


def search_texts(
    client: EmbedClient,
    index: AsymmetricIndex,
    queries: Sequence[str],
    k: int = 10,
    *,
    rescore_multiplier: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SearchResult:
    """Embed ``queries`` with the query pool and search ``index``; refuses queries from
    another space than the index's documents."""
    vectors, space = embed_all(client, queries, "query", batch_size)
    want = index.meta.get("document_space_id")
    if want and space.get("space_id") != want:
        raise ValueError(
            f"the service now writes into space {space.get('space_id')}, the index holds "
            f"documents of space {want}; rebuild the index"
        )
    return index.search(vectors, k, rescore_multiplier)
