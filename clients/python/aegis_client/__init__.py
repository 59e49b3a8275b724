"""Python client for aegis-serve's ``aegis.embed.v1.EmbedService``.

``EmbedClient`` / ``AsyncEmbedClient`` wrap the generated stubs; ``decode_embeddings`` turns any
``EmbedResponse`` into numpy arrays.
"""

from aegis_client.client import AsyncEmbedClient, EmbedClient, EmbedResult
from aegis_client.decode import decode_embeddings

__all__ = ["AsyncEmbedClient", "EmbedClient", "EmbedResult", "decode_embeddings"]
