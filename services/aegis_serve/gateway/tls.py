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


class PoolTlsFiles:
    """The pool TLS files (CA, and the gateway's client cert/key), watched: `changed()` gives
    fresh credentials once any file was replaced (e.g. a renewed client certificate, or a CA
    bundle extended before the encoders move to a new CA), so the gateway can reconnect to the
    pools without a restart."""

    def __init__(self, ca: Path, cert: Path | None, key: Path | None) -> None:
        self.ca, self.cert, self.key = ca, cert, key
        self._seen = self._signature()

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        files = [f for f in (self.ca, self.cert, self.key) if f is not None]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in (f.stat() for f in files))

    def credentials(self) -> grpc.ChannelCredentials:
        creds = channel_credentials(self.ca, self.cert, self.key)
        assert creds is not None
        return creds

    def changed(self) -> grpc.ChannelCredentials | None:
        """New credentials if a file changed since the last call, else None (also while a
        file is missing or half-written: the current channels stay)."""
        try:
            seen = self._signature()
            if seen == self._seen:
                return None
            creds = self.credentials()
        except (OSError, ValueError):
            return None
        self._seen = seen
        return creds


def server_name_options(server_name: str) -> list[tuple[str, str]]:
    """Check the encoders' certificates for `server_name` instead of the target's host."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []
