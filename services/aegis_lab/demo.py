"""A small asymmetric-search demo against a running gateway.

Documents are embedded by the document pool, queries by the query pool, and each query's
best document is printed: if the two pools did not share one space, this would be noise.
"""

from __future__ import annotations

import numpy as np

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Photosynthesis converts light energy, water and carbon dioxide into glucose and oxygen.",
    "A sourdough starter is a fermented mix of flour and water that leavens bread.",
    "TCP retransmits lost segments and uses a sliding window for flow control.",
    "The mitochondrion is the organelle that produces most of a cell's ATP.",
    "Jupiter is the largest planet in the Solar System, a gas giant with a Great Red Spot.",
    "Compound interest is interest earned on both the principal and accumulated interest.",
    "The violin is a string instrument played with a bow, the smallest of its family.",
]
QUERIES = [
    ("how do plants make food from sunlight", 1),
    ("biggest planet", 5),
    ("which organelle makes energy for the cell", 4),
    ("famous landmark in France made of iron", 0),
    ("how to bake bread with wild yeast", 2),
    ("reliable delivery of packets over a network", 3),
    ("earning interest on interest", 6),
    ("bowed string instrument", 7),
]


def run_demo(target: str, dimensions: int = 0) -> int:
    from aegis_client import EmbedClient

    with EmbedClient(target, timeout=120) as client:
        docs = client.embed(DOCS, "document", dimensions=dimensions)
        queries = client.embed([q for q, _ in QUERIES], "query", dimensions=dimensions)
    scores = queries.embeddings @ docs.embeddings.T
    hits = 0
    print(
        f"\nasymmetric search demo: queries by '{queries.model}' ({queries.encoder} pool), "
        f"documents by '{docs.model}' ({docs.encoder} pool), space {docs.space_id}, "
        f"{docs.dimensions} dims"
    )
    for (query, expected), row in zip(QUERIES, scores, strict=True):
        best = int(np.argmax(row))
        hits += best == expected
        mark = "ok " if best == expected else "MISS"
        print(f"  [{mark}] {query!r:48} -> {DOCS[best][:60]}... ({row[best]:.3f})")
    print(f"{hits}/{len(QUERIES)} queries found their document\n", flush=True)
    return 0 if hits == len(QUERIES) else 1
