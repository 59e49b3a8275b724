"""Token limits shared by the gateway and the encoders.

The gateway splits a large Embed request into chunks across replicas, so it sends its
per-request token budget to every encoder as metadata: each encoder refuses (before any
model work) a chunk whose tokens alone exceed the budget, and the gateway refuses the
request when the chunks' tokens together exceed it.
"""

from __future__ import annotations

from collections.abc import Iterable

REQUEST_TOKENS_KEY = "aegis-max-request-tokens"


def request_token_budget(own: int, metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
    """The tighter of the encoder's own limit and the caller's budget; 0 = no limit."""
    limits = [own] if own else []
    for key, value in metadata or ():
        if key == REQUEST_TOKENS_KEY and isinstance(value, str) and value.isdigit():
            limits.append(int(value))
    return min((x for x in limits if x > 0), default=0)
