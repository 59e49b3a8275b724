"""Wire constants the gateway and the encoders (and the supervisors that start them) share.

Everything one side writes and another side reads lives here, so a name cannot drift:
metadata keys, the "no prompt" marker, the back-off trailers and the READY line a process
prints once it serves.

The request token budget: the gateway splits a large Embed request into chunks across
replicas, so it sends its per-request token budget to every encoder as metadata; each
encoder refuses (before any model work) a chunk whose tokens alone exceed the budget, and the
gateway refuses the request when the chunks' tokens together exceed it.
"""

from __future__ import annotations

from collections.abc import Iterable

# Metadata key carrying the gateway's per-request token budget to the encoders.
REQUEST_TOKENS_KEY = "aegis-max-request-tokens"
# `prompt_name` value meaning "embed the text as is" (an empty name means "the role's prompt").
NO_PROMPT = "-"
# Trailing metadata on RESOURCE_EXHAUSTED: how long the caller should wait before retrying.
# `grpc-retry-pushback-ms` is gRPC's standard (gRFC A6): a channel's retry policy waits that
# long before its next attempt. `retry-after-ms` carries the same value for clients written
# against the first release; deprecated, to be dropped in the next one.
PUSHBACK_KEY = "grpc-retry-pushback-ms"
RETRY_AFTER_KEY = "retry-after-ms"
BACKOFF_TRAILERS = (PUSHBACK_KEY, RETRY_AFTER_KEY)
RETRY_AFTER_MS = 100
# First word of the one line a serving process prints on stdout once it accepts RPCs.
READY_PREFIX = "READY "


def request_token_budget(own: int, metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
    """The tighter of the encoder's own limit and the caller's budget; 0 = no limit."""
    limits = [own] if own else []
    for key, value in metadata or ():
        if key == REQUEST_TOKENS_KEY and isinstance(value, str) and value.isdigit():
            limits.append(int(value))
    return min((x for x in limits if x > 0), default=0)


def retry_after(ms: int = RETRY_AFTER_MS) -> tuple[tuple[str, str], ...]:
    """Trailing metadata telling the caller to back off for `ms` milliseconds."""
    return tuple((key, str(ms)) for key in BACKOFF_TRAILERS)


def ready_line(kind: str, **fields: object) -> str:
    """`READY <kind> k=v ...` (fields in the order given, `address=host:port` among them):
    what supervisors wait for."""
    return READY_PREFIX + " ".join([kind, *(f"{k}={v}" for k, v in fields.items())])


def parse_ready(line: str) -> dict[str, str] | None:
    """The `k=v` fields of a READY line (plus `kind`), or None for any other line."""
    if not line.startswith(READY_PREFIX):
        return None
    words = line.split()
    fields = {"kind": words[1] if len(words) > 1 else ""}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields
