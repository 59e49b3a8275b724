"""`aegis-serve`: run an encoder, the gateway, the whole local stack, or call the service."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aegis_serve.cli_flags import Command, add_settings_flags, run_command
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

    emb = sub.add_parser("embed", help="embed texts through a gateway; prints JSON lines")
    emb.add_argument("texts", nargs="+")
    emb.add_argument("--target", default="127.0.0.1:50051")
    emb.add_argument("--type", dest="input_type", choices=["query", "document"], required=True)
    emb.add_argument("--dimensions", type=int, default=0)
    emb.add_argument(
        "--encoding",
        default="float32",
        choices=["float32", "float16", "int8", "uint8", "binary", "ubinary"],
    )
    emb.add_argument("--layers", type=int, default=0)
    emb.add_argument("--timeout", type=float, default=60.0)

    info = sub.add_parser("info", help="print the gateway's GetInfo as JSON")
    info.add_argument("--target", default="127.0.0.1:50051")
    for client_cmd in (emb, info):
        client_cmd.add_argument("--token", default=None, help="bearer token (env AEGIS_TOKEN)")
        client_cmd.add_argument(
            "--verbose",
            action="store_true",
            help="on failure, print the trailers and the traceback, not just the one-line error",
        )
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


def _client_errors(command: Command) -> Command:
    """A client command whose failures print one line (`error: CODE: details`) and exit 1;
    `--verbose` adds the server's trailers and the traceback."""

    @functools.wraps(command)
    def run(ns: argparse.Namespace) -> int:
        from aegis_client import AegisError

        try:
            return command(ns)
        except AegisError as exc:
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            if exc.retry_after is not None:
                print(f"retry after {exc.retry_after:g} s", file=sys.stderr)
            if ns.verbose:
                print(f"trailers: {list(exc.trailing_metadata)}", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
            return 1

    return run


def _token(ns: argparse.Namespace) -> str | None:
    return ns.token or os.environ.get("AEGIS_TOKEN") or None


@_client_errors
def _cmd_embed(ns: argparse.Namespace) -> int:
    from aegis_client import EmbedClient

    with EmbedClient(ns.target, timeout=ns.timeout, token=_token(ns)) as client:
        result = client.embed(
            ns.texts,
            ns.input_type,
            dimensions=ns.dimensions,
            encoding=ns.encoding,
            layers=ns.layers,
        )
    for text, row in zip(ns.texts, result.embeddings, strict=True):
        print(json.dumps({"text": text, "embedding": row.tolist()}))
    meta = {
        "model": result.model,
        "encoder": result.encoder,
        "fallback": result.fallback,
        "dimensions": result.dimensions,
        "encoding": result.encoding,
        "input_tokens": result.input_tokens,
        "timing_ms": {k.removesuffix("_ns"): v / 1e6 for k, v in result.timing.items()},
    }
    print(json.dumps(meta), file=sys.stderr)
    return 0


@_client_errors
def _cmd_info(ns: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from aegis_client import EmbedClient

    with EmbedClient(ns.target, timeout=10, token=_token(ns)) as client:
        print(json.dumps(MessageToDict(client.info()), indent=2))
    return 0


COMMANDS = {
    "encoder": _cmd_encoder,
    "gateway": _cmd_gateway,
    "up": _cmd_up,
    "embed": _cmd_embed,
    "info": _cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
