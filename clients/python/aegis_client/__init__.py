"""Python client for aegis-serve's ``aegis.embed.v1.EmbedService``.

``EmbedClient`` / ``AsyncEmbedClient`` wrap the generated stubs; ``decode_embeddings`` turns any
``EmbedResponse`` into numpy arrays; failed calls raise the typed errors below (all
``AegisError``).
"""

from aegis_client.client import AsyncEmbedClient, EmbedClient, EmbedResult
from aegis_client.decode import decode_embeddings
from aegis_client.errors import (
    AegisError,
    AuthenticationError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnavailableError,
)

__all__ = [
    "AegisError",
    "AsyncEmbedClient",
    "AuthenticationError",
    "CancelledError",
    "DeadlineExceededError",
    "EmbedClient",
    "EmbedResult",
    "FailedPreconditionError",
    "InvalidInputError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnavailableError",
    "decode_embeddings",
]
