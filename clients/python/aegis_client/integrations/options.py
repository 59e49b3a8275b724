"""What both framework adapters share: the embedding options, batching of long document
lists, and turning any served encoding into the float lists the frameworks store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aegis_client.client import AsyncEmbedClient, EmbedClient, EmbedResult
from aegis_client.errors import invalid_input

__all__ = [
    "FLOAT_ENCODINGS",
    "AsymmetricCalls",
    "Clients",
    "EmbedOptions",
    "as_float_rows",
    "batches",
    "embed_async",
    "embed_sync",
]

#: Encodings an adapter can hand to a framework as float lists. binary/ubinary arrive as the
#: sign bits unpacked to -1/+1 floats (so cosine on them is 1 - 2 * hamming / dims); ubinary is
#: the same bits as binary, so only ``binary`` is offered.
FLOAT_ENCODINGS = ("float32", "float16", "int8", "uint8", "binary")
DEFAULT_BATCH_SIZE = 64
MAX_CONCURRENT_BATCHES = 4


@dataclass(frozen=True)
class EmbedOptions:
    """One adapter's settings (validated once, when the adapter is made)."""

    dimensions: int = 0
    encoding: str = "float32"
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.encoding not in FLOAT_ENCODINGS:
            raise invalid_input(
                f"encoding {self.encoding!r} cannot be handed to a framework as floats; "
                f"use one of {list(FLOAT_ENCODINGS)}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise invalid_input(f"batch_size must be an int, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise invalid_input(f"batch_size must be >= 1, got {self.batch_size}")

    def call_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``EmbedClient.embed`` for one batch."""
        return {
            "dimensions": self.dimensions,
            "encoding": self.encoding,
            "unpack_bits": self.encoding == "binary",
        }


def batches(texts: Sequence[str], size: int) -> Iterator[list[str]]:
    """``texts`` in consecutive slices of at most ``size`` (one request each)."""
    for start in range(0, len(texts), size):
        yield list(texts[start : start + size])


def as_float_rows(result: EmbedResult) -> list[list[float]]:
    """The vectors of one response as Python float lists (bits as -1/+1)."""
    matrix = result.embeddings
    if result.encoding == "binary":
        matrix = matrix.astype(np.float32) * 2 - 1
    return matrix.astype(np.float32, copy=False).tolist()


def embed_sync(
    client: EmbedClient, texts: Sequence[str], input_type: str, options: EmbedOptions
) -> list[list[float]]:
    """Every text of ``texts`` as ``input_type``, one request per batch, in order."""
    rows: list[list[float]] = []
    for batch in batches(texts, options.batch_size):
        rows.extend(as_float_rows(client.embed(batch, input_type, **options.call_kwargs())))
    return rows


async def embed_async(
    client: AsyncEmbedClient, texts: Sequence[str], input_type: str, options: EmbedOptions
) -> list[list[float]]:
    """`embed_sync` with up to MAX_CONCURRENT_BATCHES requests in flight (results in order);
    the first failed batch fails the call and cancels the others."""
    slots = asyncio.Semaphore(MAX_CONCURRENT_BATCHES)

    async def one(batch: list[str]) -> list[list[float]]:
        async with slots:
            return as_float_rows(await client.embed(batch, input_type, **options.call_kwargs()))

    tasks = [asyncio.ensure_future(one(b)) for b in batches(texts, options.batch_size)]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return [row for part in parts for row in part]


class Clients:
    """The sync client, made on first use, and one asyncio client per event loop (a grpc.aio
    channel belongs to the loop that made it; frameworks call from several)."""

    def __init__(self, target: str, client_kwargs: dict[str, Any]) -> None:
        self.target = target
        self.client_kwargs = client_kwargs
        self._sync: EmbedClient | None = None
        self._async: dict[asyncio.AbstractEventLoop, AsyncEmbedClient] = {}

    @property
    def sync(self) -> EmbedClient:
        if self._sync is None:
            self._sync = EmbedClient(self.target, **self.client_kwargs)
        return self._sync

    def for_running_loop(self) -> AsyncEmbedClient:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._async if lp.is_closed()]:
            del self._async[other]  # its channel died with it
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = AsyncEmbedClient(self.target, **self.client_kwargs)
        return client

    def close(self) -> None:
        """Close the sync channel (async channels close with their loops or `aclose`)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the running loop's async channel and the sync one."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
        self.close()


class AsymmetricCalls:
    """What each framework adapter does, once: queries to the QUERY pool, documents to the
    DOCUMENT pool, sync or async, batched, as float lists."""

    def __init__(self, target: str, options: EmbedOptions, client_kwargs: dict[str, Any]) -> None:
        self.options = options
        self.clients = Clients(target, client_kwargs)

    def documents(self, texts: Sequence[str]) -> list[list[float]]:
        return embed_sync(self.clients.sync, texts, "document", self.options)

    def query(self, text: str) -> list[float]:
        return embed_sync(self.clients.sync, [text], "query", self.options)[0]

    async def adocuments(self, texts: Sequence[str]) -> list[list[float]]:
        client = self.clients.for_running_loop()
        return await embed_async(client, texts, "document", self.options)

    async def aquery(self, text: str) -> list[float]:
        client = self.clients.for_running_loop()
        return (await embed_async(client, [text], "query", self.options))[0]

    def close(self) -> None:
        self.clients.close()
