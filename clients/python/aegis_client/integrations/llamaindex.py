"""LlamaIndex embedding model over aegis-serve: query embeddings come from the QUERY pool (the
small student), text/node embeddings from the DOCUMENT pool (the full model), in one space.

    from aegis_client.integrations.llamaindex import AegisEmbedding
    from llama_index.core import Document, Settings, VectorStoreIndex

    Settings.embed_model = AegisEmbedding("localhost:50051", dimensions=256)
    index = VectorStoreIndex.from_documents([Document(text="...")])
    index.as_retriever(similarity_top_k=3).retrieve("a question")

Needs ``pip install aegis-serve[llamaindex]``. Failures raise the client's typed errors.
"""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the LlamaIndex adapter needs llama-index-core: pip install 'aegis-serve[llamaindex]'"
    ) from exc
from pydantic import PrivateAttr

from aegis_client.client import DEFAULT_TARGET
from aegis_client.integrations.options import DEFAULT_BATCH_SIZE, AsymmetricCalls, EmbedOptions

__all__ = ["AegisEmbedding"]


class AegisEmbedding(BaseEmbedding):
    """Asymmetric embeddings from an aegis-serve gateway (see ``AegisEmbeddings`` in the
    LangChain adapter for the options). ``embed_batch_size`` is LlamaIndex's batch: texts per
    request. Other keyword arguments go to the client (``token``, ``tls``, ``timeout``, ...)."""

    _calls: AsymmetricCalls = PrivateAttr()

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        dimensions: int = 0,
        encoding: str = "float32",
        embed_batch_size: int = DEFAULT_BATCH_SIZE,
        model_name: str = "aegis-serve",
        **client_kwargs: Any,
    ) -> None:
        options = EmbedOptions(dimensions, encoding, embed_batch_size)  # our errors first
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size)
        self._calls = AsymmetricCalls(target, options, client_kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "AegisEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._calls.query(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await self._calls.aquery(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._calls.documents([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._calls.adocuments([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._calls.documents(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._calls.adocuments(texts)

    def close(self) -> None:
        """Close the gRPC channels this adapter opened."""
        self._calls.close()
