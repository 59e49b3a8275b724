"""LangChain ``Embeddings`` over aegis-serve: ``embed_query`` goes to the QUERY pool (the small
student), ``embed_documents`` to the DOCUMENT pool (the full model); both land in one space.

    from aegis_client.integrations.langchain import AegisEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(AegisEmbeddings("localhost:50051", dimensions=256))
    store.add_texts(["Paris is the capital of France.", ...])
    store.similarity_search("capital of france", k=3)

Needs ``pip install aegis-serve[langchain]``. Failures raise the client's typed errors
(``aegis_client.AegisError`` subclasses).
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.embeddings import Embeddings
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the LangChain adapter needs langchain-core: pip install 'aegis-serve[langchain]'"
    ) from exc

from aegis_client.client import DEFAULT_TARGET
from aegis_client.integrations.options import DEFAULT_BATCH_SIZE, AsymmetricCalls, EmbedOptions

__all__ = ["AegisEmbeddings"]


class AegisEmbeddings(Embeddings):
    """Asymmetric embeddings from an aegis-serve gateway.

    ``dimensions``: a Matryoshka dim (0 = full); ``encoding``: float32 (default), float16,
    int8, uint8 or binary (sign bits as -1/+1 floats); ``batch_size``: texts per request for
    long document lists (async sends up to 4 at once). Other keyword arguments (``token``,
    ``tls``, ``root_certificates``, ``timeout``, ``max_attempts``, ...) go to the client.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        dimensions: int = 0,
        encoding: str = "float32",
        batch_size: int = DEFAULT_BATCH_SIZE,
        **client_kwargs: Any,
    ) -> None:
        self.calls = AsymmetricCalls(
            target, EmbedOptions(dimensions, encoding, batch_size), client_kwargs
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.calls.documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.calls.query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.calls.adocuments(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.calls.aquery(text)

    def close(self) -> None:
        """Close the gRPC channels this adapter opened."""
        self.calls.close()
