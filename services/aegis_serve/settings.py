"""One settings object per process, from flags and AEGIS_* environment variables.

Flags win over the environment, the environment over defaults (pydantic-settings does
the parsing and validation, so a bad value fails at start with the field's name).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
# The query model's CPU runtime: torch as loaded, torch dynamic int8, ONNX Runtime (fp32 or
# int8 weights; the `onnx` extra). See models/embedder.py and docs/benchmarks.md.
Backend = Literal["torch", "torch-int8", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
# The query pool "target" that runs the query model inside the gateway process (no network hop).
EMBEDDED = "embedded"


def resolve_backend(setting: str) -> str:
    """`auto` = onnx when the `onnx` extra is installed (same vectors, faster), else torch."""
    if setting != "auto":
        return setting
    from aegis_serve.models.onnx_runtime import onnx_available

    return "onnx" if onnx_available() else "torch"


class CommonSettings(BaseSettings):
    """Settings every aegis-serve process shares."""

    model_config = SettingsConfigDict(env_prefix="AEGIS_", extra="ignore")

    host: str = Field("127.0.0.1", description="bind address")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 = off")
    shutdown_grace_s: float = Field(20.0, ge=0, description="SIGTERM drain time for in-flight RPCs")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(False, description="one JSON object per log line (with trace ids)")
    max_message_bytes: int = Field(
        16 * MiB, ge=1024, description="largest gRPC message sent or received, in bytes"
    )
    max_connection_age_s: float = Field(0.0, ge=0, description="0 = connections live forever")
    tls_cert: Path | None = Field(None, description="server certificate (PEM); enables TLS")
    tls_key: Path | None = Field(None, description="server private key (PEM)")
    tls_ca: Path | None = Field(None, description="CA of client certificates (PEM); enables mTLS")


class EncoderSettings(CommonSettings):
    """An encoder pool replica: one model, one role."""

    model: str = Field(
        description="model directory, or builtin:query, builtin:document, builtin:query-linear, "
        "builtin:query-exit2, builtin:query-leaf"
    )
    role: Literal["query", "document"] = Field(description="the pool this replica serves")
    port: int = Field(50061, ge=0, le=65535, description="0 = pick a free port")
    device: str = Field("cpu", description="cpu, cuda, cuda:1 ...")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="weights dtype (default: float32 on CPU, bfloat16 on CUDA)"
    )
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = torch default")
    backend: Backend = Field(
        "torch", description="CPU model runtime; onnx* need the `onnx` extra (full depth only)"
    )
    attention: Literal["auto", "packed", "padded"] = Field(
        "auto",
        description="packed = one sequence per batch with FlexAttention (ModernBERT); auto = "
        "per batch on CUDA ModernBERT (several texts packed, a lone text padded), else padded",
    )
    max_batch_tokens: int = Field(16384, ge=1, description="padded tokens per forward pass")
    max_batch_texts: int = Field(256, ge=1, description="texts per forward pass")
    max_queue_texts: int = Field(4096, ge=1, description="queued texts before RESOURCE_EXHAUSTED")
    max_texts_per_request: int = Field(2048, ge=1, description="texts per Encode call")
    batch_wait_ms: float = Field(0.0, ge=0, description="extra wait to grow a batch")
    max_input_tokens: int = Field(
        0, ge=0, description="tokens per text, capped below the model's own limit; 0 = model's"
    )
    max_request_tokens: int = Field(
        0, ge=0, description="tokens per Encode call, checked before the model; 0 = no limit"
    )


def _embedded(name: str) -> Any:
    """An EncoderSettings field for the gateway's embedded query pool: same default, bounds
    and help (declared once, in EncoderSettings)."""
    field = copy.deepcopy(EncoderSettings.model_fields[name])
    field.description = f"embedded query pool (--query {EMBEDDED}): {field.description}"
    return field


def _split_targets(value: object) -> object:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


class GatewaySettings(CommonSettings):
    """The public gateway in front of the two pools."""

    query: Annotated[list[str], NoDecode] = Field(
        description="query pool targets, comma-separated (host:port, dns:///svc:port, xds:///...); "
        f"`{EMBEDDED}` runs the query model inside the gateway (same batching, no network hop; "
        "--query-model, --query-backend, --query-threads ...)"
    )
    document: Annotated[list[str], NoDecode] = Field(
        description="document pool targets, comma-separated"
    )
    port: int = Field(50051, ge=0, le=65535, description="0 = pick a free port")
    http_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve an OpenAI-compatible POST /v1/embeddings on this port (needs the "
        "`http` extra; same auth, TLS and limits as gRPC; 0 = a free port); off when unset",
    )
    max_inputs: int = Field(2048, ge=1, description="inputs per request")
    max_input_chars: int = Field(1_000_000, ge=1, description="characters per input")
    encoder_timeout_s: float = Field(120.0, gt=0, description="deadline when the caller sets none")
    health_interval_s: float = Field(2.0, gt=0, description="seconds between pool probes")
    query_fallback: bool = Field(True, description="serve queries on the document pool if needed")
    max_concurrent_streams: int = Field(256, ge=1, description="open EmbedStream calls")
    max_request_tokens: int = Field(
        0, ge=0, description="tokens per Embed request (all chunks together); 0 = no limit"
    )
    max_inflight_requests: int = Field(1024, ge=1, description="Embed/Tokenize being served")
    query_coalesce_calls: int = Field(
        2,
        ge=0,
        description="Encode calls in flight per remote query replica; requests arriving while "
        "that many are out wait and go together as one call when one returns (no timer: a lone "
        "query is sent at once); 0 = every request its own call",
    )
    query_coalesce_texts: int = Field(
        64, ge=2, description="texts per coalesced Encode call to a remote query replica"
    )
    # Verified space identity (gateway/canary.py).
    canary_interval_s: float = Field(
        300.0,
        ge=0,
        description="seconds between canary checks of an admitted replica (every replica is "
        "checked as it joins); 0 = no canary checks",
    )
    canary_min_cosine: float = Field(
        0.98,
        gt=0,
        le=1,
        description="a replica's vectors of its canary texts must reach this cosine with the "
        "references, text by text",
    )
    canary_min_agreement: float = Field(
        0.25,
        ge=-1,
        le=1,
        description="query replicas: agreement margin with the document pool on its canary "
        "texts (matched minus unmatched cosine; shipped students 0.46-0.56, another space ~0)",
    )
    max_inflight_inputs: int = Field(65536, ge=1, description="input texts being served")
    # Bearer-token auth (common/auth.py); no tokens configured = auth off.
    auth_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="bearer tokens, comma-separated (env only: keep tokens out of process "
        "listings)",
        json_schema_extra={"cli": False},
    )
    auth_tokens_file: Path | None = Field(
        None, description="file of bearer tokens, one per line (see docs/deploy.md)"
    )
    auth_rate_per_s: float = Field(
        0.0,
        ge=0,
        description="requests/s per token, per gateway replica (N replicas admit N x this; a "
        "cluster-wide limit is the mesh's global rate limit, chart value meshRateLimit); "
        "0 = no limit",
    )
    auth_burst: int = Field(20, ge=1, description="requests a token may send at once")
    # mTLS gateway -> pools: CA that signed the encoders' certs, and the gateway's client cert.
    pool_tls_ca: Path | None = Field(
        None, description="CA of the encoders' certificates (enables TLS to the pools)"
    )
    pool_tls_cert: Path | None = Field(
        None, description="the gateway's client certificate for pool mTLS"
    )
    pool_tls_key: Path | None = Field(None, description="the gateway's client key for pool mTLS")
    pool_tls_server_name: str = Field("", description="expected name in the encoders' certs")
    # The embedded query pool (`--query embedded`): the encoder's core and batcher in-process.
    query_model: str = Field(
        "builtin:query",
        description=f"embedded query pool (--query {EMBEDDED}): model directory, builtin:query, "
        "builtin:query-linear, builtin:query-exit2 or builtin:query-leaf",
    )
    query_backend: Literal["auto"] | Backend = Field(
        "auto",
        description=f"embedded query pool (--query {EMBEDDED}): CPU model runtime; auto = onnx "
        "when the onnx extra is installed, else torch",
    )
    query_device: str = _embedded("device")
    query_threads: int = _embedded("threads")
    query_max_batch_tokens: int = _embedded("max_batch_tokens")
    query_max_batch_texts: int = _embedded("max_batch_texts")
    query_max_queue_texts: int = _embedded("max_queue_texts")
    query_batch_wait_ms: float = _embedded("batch_wait_ms")
    query_max_input_tokens: int = _embedded("max_input_tokens")

    _split_q = field_validator("query", "document", "auth_tokens", mode="before")(_split_targets)

    @model_validator(mode="after")
    def _pool_tls_pairs(self) -> GatewaySettings:
        if bool(self.pool_tls_cert) != bool(self.pool_tls_key):
            raise ValueError("pool_tls_cert and pool_tls_key go together")
        if self.pool_tls_cert and not self.pool_tls_ca:
            raise ValueError("pool_tls_cert needs pool_tls_ca (the CA of the encoders' certs)")
        if self.pool_tls_server_name and not self.pool_tls_ca:
            raise ValueError("pool_tls_server_name needs pool_tls_ca")
        return self

    @field_validator("query", "document")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one pool address is required")
        return value

    @field_validator("query")
    @classmethod
    def _one_embedded(cls, value: list[str]) -> list[str]:
        if value.count(EMBEDDED) > 1:
            raise ValueError(f"`{EMBEDDED}` may appear once among the query targets")
        return value

    @field_validator("document")
    @classmethod
    def _document_is_remote(cls, value: list[str]) -> list[str]:
        if EMBEDDED in value:
            raise ValueError(
                f"the document pool cannot be `{EMBEDDED}`; only the query pool runs in the gateway"
            )
        return value

    @property
    def embedded_query(self) -> bool:
        """The query model runs inside the gateway (`--query embedded`)."""
        return EMBEDDED in self.query

    @property
    def remote_query(self) -> list[str]:
        """The query pool's gRPC targets (all of them but `embedded`)."""
        return [t for t in self.query if t != EMBEDDED]

    def embedded_encoder_settings(self, model: str, backend: str) -> EncoderSettings:
        """The embedded query pool's encoder settings (`model` resolved to a directory,
        `backend` resolved from auto); a request is at most `max_inputs` texts."""
        return EncoderSettings(
            model=model, role="query", port=0, device=self.query_device, backend=backend,
            threads=self.query_threads, max_batch_tokens=self.query_max_batch_tokens,
            max_batch_texts=self.query_max_batch_texts,
            max_queue_texts=self.query_max_queue_texts, batch_wait_ms=self.query_batch_wait_ms,
            max_input_tokens=self.query_max_input_tokens, max_texts_per_request=self.max_inputs,
            max_request_tokens=0,  # the gateway sends its budget with every call (protocol.py)
            metrics_port=0, log_level=self.log_level, log_json=self.log_json,
        )  # fmt: skip
