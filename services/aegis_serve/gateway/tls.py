"""Client-side TLS for the gateway's channels to the encoder pools (mTLS when a cert is set)."""

from __future__ import annotations

from pathlib import Path

import grpc


def channel_credentials(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials | None:
    """TLS credentials trusting `ca`, presenting `cert`/`key` as the client; None = plaintext."""
    if ca is None:
        return None
    try:
        return grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )
    except OSError as exc:
        raise ValueError(f"cannot read pool TLS file: {exc}") from None


def server_name_options(server_name: str) -> list[tuple[str, str]]:
    """Check the encoders' certificates for `server_name` instead of the target's host."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []
