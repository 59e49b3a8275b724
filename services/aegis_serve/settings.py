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

    host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 = off")
    shutdown_grace_s: float = Field(20.0, ge=0, description="SIGTERM drain time for in-flight RPCs")
    log_level: str = "INFO"
    log_json: bool = False
    max_message_bytes: int = Field(16 * MiB, ge=1024)
    max_connection_age_s: float = Field(0.0, ge=0, description="0 = connections live forever")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None


class EncoderSettings(CommonSettings):
    """An encoder pool replica: one model, one role."""

    model: str
    role: Literal["query", "document"]
    port: int = Field(50061, ge=0, le=65535)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = torch default")
    backend: Backend = Field(
        "torch", description="CPU model runtime; onnx* need the `onnx` extra (full depth only)"
    )
    attention: Literal["auto", "packed", "padded"] = Field(
        "auto", description="packed = one sequence per batch with FlexAttention (ModernBERT)"
    )
    max_batch_tokens: int = Field(16384, ge=1, description="padded tokens per forward pass")
    max_batch_texts: int = Field(256, ge=1)
    max_queue_texts: int = Field(4096, ge=1, description="queued texts before RESOURCE_EXHAUSTED")
    max_texts_per_request: int = Field(2048, ge=1)
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

    query: Annotated[list[str], NoDecode]
    document: Annotated[list[str], NoDecode]
    port: int = Field(50051, ge=0, le=65535)
    max_inputs: int = Field(2048, ge=1, description="inputs per request")
    max_input_chars: int = Field(1_000_000, ge=1, description="characters per input")
    encoder_timeout_s: float = Field(120.0, gt=0, description="deadline when the caller sets none")
    health_interval_s: float = Field(2.0, gt=0)
    query_fallback: bool = Field(True, description="serve queries on the document pool if needed")
    max_concurrent_streams: int = Field(256, ge=1, description="open EmbedStream calls")
    max_request_tokens: int = Field(
        0, ge=0, description="tokens per Embed request (all chunks together); 0 = no limit"
    )
    max_inflight_requests: int = Field(1024, ge=1, description="Embed/Tokenize being served")
    max_inflight_inputs: int = Field(65536, ge=1, description="input texts being served")
    # Bearer-token auth (common/auth.py); no tokens configured = auth off.
    auth_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    auth_tokens_file: Path | None = None
    auth_rate_per_s: float = Field(0.0, ge=0, description="requests/s per token; 0 = no limit")
    auth_burst: int = Field(20, ge=1, description="requests a token may send at once")
    # mTLS gateway -> pools: CA that signed the encoders' certs, and the gateway's client cert.
    pool_tls_ca: Path | None = None
    pool_tls_cert: Path | None = None
    pool_tls_key: Path | None = None
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
