"""Client-side TLS for the gateway's channels to the encoder pools (mTLS when a cert is set)."""

from __future__ import annotations

from pathlib import Path

import grpc

from aegis_serve.common.watched_files import WatchedFiles


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


def pool_tls_files(
    ca: Path | None, cert: Path | None, key: Path | None
) -> WatchedFiles[grpc.ChannelCredentials] | None:
    """The pool TLS files, watched (None for plaintext pools): a renewed client certificate,
    or a CA bundle extended before the encoders move to a new CA, gives fresh credentials the
    gateway reconnects to the pools with, without a restart."""
    if ca is None:
        return None

    def load() -> grpc.ChannelCredentials:
        creds = channel_credentials(ca, cert, key)
        assert creds is not None
        return creds

    return WatchedFiles([ca, cert, key], load, "pool TLS files")


def server_name_options(server_name: str) -> list[tuple[str, str]]:
    """Check the encoders' certificates for `server_name` instead of the target's host."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []
