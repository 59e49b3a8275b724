"""One settings object per process, from flags and AEGIS_* environment variables.

Flags win over the environment, the environment over defaults (pydantic-settings does
the parsing and validation, so a bad value fails at start with the field's name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
# The query model's CPU runtime: torch as loaded, torch dynamic int8, ONNX Runtime (fp32 or
# int8 weights; the `onnx` extra). See models/embedder.py and docs/benchmarks.md.
Backend = Literal["torch", "torch-int8", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)


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
        "builtin:query-exit2"
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
        "auto", description="packed = one sequence per batch with FlexAttention (ModernBERT)"
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


def _split_targets(value: object) -> object:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


class GatewaySettings(CommonSettings):
    """The public gateway in front of the two pools."""

    query: Annotated[list[str], NoDecode] = Field(
        description="query pool targets, comma-separated (host:port, dns:///svc:port, xds:///...)"
    )
    document: Annotated[list[str], NoDecode] = Field(
        description="document pool targets, comma-separated"
    )
    port: int = Field(50051, ge=0, le=65535, description="0 = pick a free port")
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
    auth_rate_per_s: float = Field(0.0, ge=0, description="requests/s per token; 0 = no limit")
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
