"""`aegis-serve`: run an encoder, the gateway, the whole local stack, or call the service."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aegis_serve.cli_client import CLIENT_COMMANDS, add_client_commands
from aegis_serve.cli_flags import add_settings_flags, run_command
from aegis_serve.common.logs import setup_logging

if TYPE_CHECKING:
    from aegis_serve.settings import GatewaySettings


def build_parser() -> argparse.ArgumentParser:
    from aegis_serve.settings import EncoderSettings, GatewaySettings
    from aegis_serve.stack import StackSettings

    parser = argparse.ArgumentParser(
        prog="aegis-serve",
        description=__doc__,
        epilog="Every flag has an environment variable (AEGIS_ + the flag name); flags win. "
        "Training, evaluation, benchmarks and the fault suite: aegis-lab --help.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encoder", help="run one encoder pool replica")
    add_settings_flags(enc, EncoderSettings)

    gw = sub.add_parser("gateway", help="run the public gateway")
    add_settings_flags(gw, GatewaySettings)

    up = sub.add_parser("up", help="run query pool, document pool and gateway locally")
    add_settings_flags(up, StackSettings)
    up.add_argument(
        "--demo", action="store_true", help="run the search demo once ready (aegis-lab demo)"
    )

    add_client_commands(sub)
    return parser


def _settings(cls: type, ns: argparse.Namespace, drop: Sequence[str] = ()) -> object:
    values = {k: v for k, v in vars(ns).items() if k not in {"command", *drop}}
    try:
        return cls(**values)
    except ValidationError as exc:
        raise SystemExit(f"invalid configuration:\n{exc}") from None


def _cmd_encoder(ns: argparse.Namespace) -> int:
    from aegis_serve.encoder.server import run_encoder
    from aegis_serve.models.resolve import resolve_model
    from aegis_serve.settings import EncoderSettings

    settings = _settings(EncoderSettings, ns)
    setup_logging(settings.log_level, settings.log_json, f"encoder:{settings.role}")
    try:
        settings.model = str(resolve_model(settings.model))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    asyncio.run(run_encoder(settings))
    return 0


def _cmd_gateway(ns: argparse.Namespace) -> int:
    from aegis_serve.gateway.server import run_gateway
    from aegis_serve.settings import GatewaySettings

    settings = _settings(GatewaySettings, ns)
    setup_logging(settings.log_level, settings.log_json, "gateway")
    _check_secret_files(settings)
    asyncio.run(run_gateway(settings))
    return 0


def _check_secret_files(settings: GatewaySettings) -> None:
    """Fail at start, with the file named, on unreadable tokens or pool certificates."""
    from aegis_serve.gateway.auth import load_principals
    from aegis_serve.gateway.tls import channel_credentials

    try:
        load_principals(settings.auth_tokens, settings.auth_tokens_file)
        channel_credentials(settings.pool_tls_ca, settings.pool_tls_cert, settings.pool_tls_key)
    except ValueError as exc:
        raise SystemExit(f"invalid configuration: {exc}") from None


def _cmd_up(ns: argparse.Namespace) -> int:
    from aegis_serve.stack import StackSettings, run_stack

    settings = _settings(StackSettings, ns, drop=("demo",))
    setup_logging(settings.log_level, settings.log_json, "up")
    on_ready = None
    if ns.demo:
        if importlib.util.find_spec("aegis_lab") is None:
            raise SystemExit(
                "--demo runs `aegis-lab demo`, which is not installed: "
                "pip install -e ./services/aegis_lab"
            )
        on_ready = [sys.executable, "-m", "aegis_lab.cli", "demo"]
    return run_stack(settings, on_ready=on_ready)


COMMANDS = {
    "encoder": _cmd_encoder,
    "gateway": _cmd_gateway,
    "up": _cmd_up,
    **CLIENT_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
