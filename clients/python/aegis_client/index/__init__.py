"""An asymmetric vector index on usearch: documents embedded by the DOCUMENT pool stored as
binary / int8 / float32 at a chosen Matryoshka dim, searched with QUERY-pool vectors, the
candidates optionally rescored with the float query against full-dim int8 document vectors
kept on disk (the two-stage recipe of sentence-transformers' quantization guide).

Needs ``pip install aegis-serve[index]`` (usearch). ``AsymmetricIndex`` works on vectors;
``build_index`` / ``search_texts`` embed through a gateway.
"""

from aegis_client.index.gateway import build_index, search_texts
from aegis_client.index.store import AsymmetricIndex, IndexSpec, SearchResult

__all__ = ["AsymmetricIndex", "IndexSpec", "SearchResult", "build_index", "search_texts"]
