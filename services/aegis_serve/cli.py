"""`aegis-serve`: run an encoder, the gateway, the whole local stack, or call the service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aegis_serve.common.logs import setup_logging
from aegis_serve.settings import BACKENDS

if TYPE_CHECKING:
    from aegis_serve.settings import GatewaySettings

S = argparse.SUPPRESS  # flags not given stay unset, so env vars and defaults apply


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=S, help="bind address (env AEGIS_HOST, default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, default=S, help="Prometheus /metrics port (0=off)")
    p.add_argument("--shutdown-grace-s", type=float, default=S, help="SIGTERM drain time")
    p.add_argument("--log-level", default=S)
    p.add_argument("--log-json", action="store_true", default=S, help="JSON log lines")
    p.add_argument("--max-message-bytes", type=int, default=S)
    p.add_argument("--max-connection-age-s", type=float, default=S)
    p.add_argument("--tls-cert", default=S)
    p.add_argument("--tls-key", default=S)
    p.add_argument("--tls-ca", default=S, help="CA for client certificates (enables mTLS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aegis-serve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encoder", help="run one encoder pool replica")
    _common(enc)
    enc.add_argument("--model", default=S, help="model dir, builtin:query or builtin:document")
    enc.add_argument("--role", choices=["query", "document"], default=S)
    enc.add_argument("--port", type=int, default=S, help="0 = pick a free port")
    enc.add_argument("--device", default=S, help="cpu, cuda, cuda:1 ...")
    enc.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=S)
    enc.add_argument("--threads", type=int, default=S)
    enc.add_argument("--attention", choices=["auto", "packed", "padded"], default=S)
    enc.add_argument(
        "--backend",
        choices=["torch", "torch-int8", "onnx", "onnx-int8"],
        default=S,
        help="CPU runtime (onnx*: pip install 'aegis-serve[onnx]'; full depth only)",
    )
    enc.add_argument("--max-batch-tokens", type=int, default=S)
    enc.add_argument("--max-batch-texts", type=int, default=S)
    enc.add_argument("--max-queue-texts", type=int, default=S)
    enc.add_argument("--max-texts-per-request", type=int, default=S)
    enc.add_argument("--batch-wait-ms", type=float, default=S)
    enc.add_argument("--max-input-tokens", type=int, default=S, help="0 = the model's limit")
    enc.add_argument("--max-request-tokens", type=int, default=S, help="per Encode; 0 = none")

    gw = sub.add_parser("gateway", help="run the public gateway")
    _common(gw)
    gw.add_argument("--query", default=S, help="query pool targets, comma-separated")
    gw.add_argument("--document", default=S, help="document pool targets, comma-separated")
    gw.add_argument("--port", type=int, default=S)
    gw.add_argument("--max-inputs", type=int, default=S)
    gw.add_argument("--max-input-chars", type=int, default=S)
    gw.add_argument("--encoder-timeout-s", type=float, default=S)
    gw.add_argument("--health-interval-s", type=float, default=S)
    gw.add_argument("--no-query-fallback", dest="query_fallback", action="store_false", default=S)
    gw.add_argument("--max-request-tokens", type=int, default=S, help="per request; 0 = none")
    gw.add_argument("--max-inflight-requests", type=int, default=S)
    gw.add_argument("--max-inflight-inputs", type=int, default=S)
    gw.add_argument("--max-concurrent-streams", type=int, default=S, help="open EmbedStreams")
    gw.add_argument("--auth-tokens-file", default=S, help="one token per line (see docs)")
    gw.add_argument("--auth-rate-per-s", type=float, default=S, help="per token; 0 = no limit")
    gw.add_argument("--auth-burst", type=int, default=S)
    gw.add_argument("--pool-tls-ca", default=S, help="CA of the encoders' certs (TLS to pools)")
    gw.add_argument("--pool-tls-cert", default=S, help="gateway client cert for pool mTLS")
    gw.add_argument("--pool-tls-key", default=S)
    gw.add_argument("--pool-tls-server-name", default=S, help="name the encoder certs carry")

    up = sub.add_parser("up", help="run query pool, document pool and gateway locally")
    _common(up)
    up.add_argument("--gateway-port", type=int, default=S)
    up.add_argument("--query-port", type=int, default=S)
    up.add_argument("--document-port", type=int, default=S)
    up.add_argument("--query-model", default=S)
    up.add_argument("--document-model", default=S)
    up.add_argument("--document-device", default=S)
    up.add_argument("--query-threads", type=int, default=S)
    up.add_argument("--query-backend", choices=["auto", *BACKENDS], default=S)
    up.add_argument("--document-threads", type=int, default=S)
    up.add_argument("--demo", action="store_true", help="run the search demo once ready")

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

    bench = sub.add_parser("bench", help="benchmarks written to docs/benchmarks.md")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    doc = bench_sub.add_parser("document", help="document pool via gateway vs raw HF forward")
    doc.add_argument(
        "--model",
        default="aegis:full",
        help="model dir, builtin:document, aegis:full or aegis:tiny (random weights)",
    )
    doc.add_argument("--device", default="cuda")
    doc.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    doc.add_argument("--docs", type=int, default=2048)
    doc.add_argument("--docs-per-request", type=int, default=16)
    doc.add_argument("--concurrency", default="1,4,16,64")
    doc.add_argument("--layers", default="", help="depths to measure (default: all offered)")
    doc.add_argument("--long", default="8192,32768", help="single long inputs (tokens)")
    doc.add_argument("--raw-batch-size", type=int, default=32)
    doc.add_argument("--max-batch-tokens", type=int, default=65536)
    doc.add_argument("--max-seconds", type=float, default=120.0, help="per measured run")
    doc.add_argument("--out-dir", default="docs")
    doc.add_argument(
        "--attention",
        default="padded",
        help="encoder attention modes to measure, e.g. padded,packed",
    )

    qb = bench_sub.add_parser("query", help="query path: in-process vs encoder vs gateway")
    qb.add_argument("--model", default="builtin:query")
    qb.add_argument("--threads", type=int, default=0, help="encoder threads (0 = all cores)")
    qb.add_argument("--requests", type=int, default=400, help="per measured run")
    qb.add_argument("--concurrency", default="1,8,64,256")
    qb.add_argument("--max-seconds", type=float, default=30.0, help="per measured run")
    qb.add_argument("--batch-wait-ms", type=float, default=0.0)
    qb.add_argument("--backend", default="torch", choices=BACKENDS)
    qb.add_argument("--out-dir", default="docs")
    qb.add_argument("--peers", default="naive_st,infinity", help="peers to measure too ('' = none)")
    qb.add_argument(
        "--infinity-bin",
        default="",
        help="infinity_emb executable (default: /tmp/infinity-venv/bin/infinity_emb if "
        "present, else Infinity is skipped with a note; see scripts/install_infinity.sh)",
    )
    qb.add_argument("--naive-workers", type=int, default=10, help="naive_st gRPC threads")
    qb.add_argument(
        "--split-procs", type=int, default=2, help="gateway_2proc query processes (0 = skip)"
    )
    qb.add_argument("--split-concurrency", type=int, default=64)

    bb = bench_sub.add_parser("backends", help="query model backends: latency, speed, quality")
    bb.add_argument("--model", default="builtin:query")
    bb.add_argument("--teacher", default="builtin:document", help="embeds the documents")
    bb.add_argument("--dataset", default="wordnet")
    bb.add_argument("--backends", default="torch,torch-int8,onnx,onnx-int8")
    bb.add_argument(
        "--baseline", action="append", default=[], help="NAME=MODEL another query model to compare"
    )
    bb.add_argument("--threads", type=int, default=0, help="0 = torch default (all cores)")
    bb.add_argument("--requests", type=int, default=300, help="single queries per backend")
    bb.add_argument("--batch-texts", type=int, default=1024, help="batched texts per backend")
    bb.add_argument("--out-dir", default="docs")

    tb = bench_sub.add_parser("telemetry", help="gateway latency with tracing + metrics on vs off")
    tb.add_argument("--model", default="builtin:query")
    tb.add_argument("--threads", type=int, default=0, help="encoder threads (0 = all cores)")
    tb.add_argument("--backend", default="onnx", choices=BACKENDS, help="query encoders' runtime")
    tb.add_argument("--rounds", type=int, default=6, help="alternating off/on rounds")
    tb.add_argument("--sampling", default="1.0,0.1", help="head-sampling ratios of the on stacks")
    tb.add_argument("--requests", type=int, default=200, help="per round and stack, 1 in flight")
    tb.add_argument("--throughput-requests", type=int, default=400, help="per round and stack")
    tb.add_argument("--concurrency", type=int, default=64, help="for the throughput runs")
    tb.add_argument("--out-dir", default="docs")

    chaos = sub.add_parser("chaos", help="fault suite: kill/SIGTERM replicas, overload, fuzz")
    from aegis_serve.chaos.scenarios import SCENARIOS

    chaos.add_argument("--scenario", action="append", choices=list(SCENARIOS), default=[],
                       help="run only these (repeatable; default: all)")  # fmt: skip
    size = chaos.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help="CI-sized load (default)")
    size.add_argument("--long", action="store_true", help="report-sized load (minutes)")
    chaos.add_argument("--report", action="store_true", help="write docs/reliability.md + JSON")
    chaos.add_argument("--model", default="builtin:query", help="served by both pools")
    chaos.add_argument("--threads", type=int, default=1, help="torch threads per encoder")
    chaos.add_argument("--max-queue-texts", type=int, default=64, help="encoder queue bound")
    chaos.add_argument("--seed", type=int, default=0, help="texts and fuzz examples")
    chaos.add_argument("--no-progress", action="store_true")
    chaos.add_argument("--out-md", default="docs/reliability.md")
    chaos.add_argument("--out-json", default="docs/results/reliability.json")

    dist = sub.add_parser("distill", help="distill a query student into the teacher's space")
    from aegis_serve.training import add_arguments as distill_arguments

    distill_arguments(dist)

    pack = sub.add_parser(
        "pack-student",
        help="write a distilled student without the tensors it shares with its teacher",
    )
    pack.add_argument("--model", required=True, help="the distilled student dir")
    pack.add_argument("--shared-with", default="builtin:document", help="the teacher spec")
    pack.add_argument("--out", required=True, help="e.g. services/aegis_serve/assets/...")

    ev = sub.add_parser("eval", help="alignment report: docs/alignment.md + results JSON")
    ev.add_argument("--query-model", default="builtin:query")
    ev.add_argument("--document-model", default="builtin:document")
    ev.add_argument("--dataset", default="wordnet", help="wordnet, wordnet-10k or a JSON file")
    ev.add_argument(
        "--baseline", action="append", default=[], help="NAME=DIR extra query model to compare"
    )
    ev.add_argument("--out-md", default="docs/alignment.md")
    ev.add_argument("--out-json", default="docs/results/alignment.json")
    ev.add_argument("--notes", default="", help="Markdown file appended to the report")

    demo = sub.add_parser("demo", help="asymmetric search demo against a running gateway")
    demo.add_argument("--target", default="127.0.0.1:50051")
    demo.add_argument("--dimensions", type=int, default=0)
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
    from aegis_serve.common.auth import load_principals
    from aegis_serve.common.tls import channel_credentials

    try:
        load_principals(settings.auth_tokens, settings.auth_tokens_file)
        channel_credentials(settings.pool_tls_ca, settings.pool_tls_cert, settings.pool_tls_key)
    except ValueError as exc:
        raise SystemExit(f"invalid configuration: {exc}") from None


def _cmd_up(ns: argparse.Namespace) -> int:
    from aegis_serve.stack import StackSettings, run_stack

    settings = _settings(StackSettings, ns, drop=("demo",))
    setup_logging(settings.log_level, settings.log_json, "up")
    return run_stack(settings, on_ready=["demo"] if ns.demo else None)


def _cmd_embed(ns: argparse.Namespace) -> int:
    from aegis_client import EmbedClient

    with EmbedClient(ns.target, timeout=ns.timeout) as client:
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


def _cmd_info(ns: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from aegis_client import EmbedClient

    with EmbedClient(ns.target, timeout=10) as client:
        print(json.dumps(MessageToDict(client.info()), indent=2))
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from aegis_serve.demo import run_demo

    return run_demo(ns.target, ns.dimensions)


def _cmd_bench(ns: argparse.Namespace) -> int:
    if ns.bench == "document":
        from aegis_serve.bench.document import main_args

        return main_args(ns)
    if ns.bench == "query":
        from aegis_serve.bench.query import main_args as query_main

        return query_main(ns)
    if ns.bench == "backends":
        from aegis_serve.bench.backends import main_args as backends_main

        return backends_main(ns)
    if ns.bench == "telemetry":
        from aegis_serve.bench.telemetry import main_args as telemetry_main

        return telemetry_main(ns)
    raise SystemExit(f"unknown bench {ns.bench}")


def _cmd_chaos(ns: argparse.Namespace) -> int:
    from aegis_serve.chaos.run import main_args

    return main_args(ns)


def _cmd_distill(ns: argparse.Namespace) -> int:
    from aegis_serve.training.distill import config_from_args, distill

    summary = distill(config_from_args(ns))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_pack_student(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from aegis_serve.models.resolve import resolve_model
    from aegis_serve.models.shared_weights import strip_shared

    try:
        source = resolve_model(ns.shared_with)
        manifest = strip_shared(Path(ns.model), source, ns.shared_with, Path(ns.out))
    except ValueError as exc:  # SharedWeightsError included
        raise SystemExit(str(exc)) from None
    print(json.dumps({"out": ns.out, "shared": sorted(manifest["tensors"])}))
    return 0


def _cmd_eval(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from aegis_serve.evaluation.report import write_report
    from aegis_serve.evaluation.retrieval import run_eval

    baselines = dict(b.split("=", 1) for b in ns.baseline)
    result = run_eval(ns.query_model, ns.document_model, ns.dataset, baselines)
    notes = Path(ns.notes).read_text(encoding="utf-8") if ns.notes else ""
    command = "aegis-serve " + " ".join(sys.argv[1:])
    write_report(result, command, Path(ns.out_md), Path(ns.out_json), notes)
    print(json.dumps({"rows": len(result["rows"]), "eval_seconds": result["eval_seconds"]}))
    return 0


COMMANDS = {
    "bench": _cmd_bench,
    "chaos": _cmd_chaos,
    "distill": _cmd_distill,
    "eval": _cmd_eval,
    "pack-student": _cmd_pack_student,
    "encoder": _cmd_encoder,
    "gateway": _cmd_gateway,
    "up": _cmd_up,
    "embed": _cmd_embed,
    "info": _cmd_info,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
