"""`aegis-lab`: train, evaluate, benchmark and fault-test aegis-serve (never imported by it).

The serving package (`aegis-serve`) serves and nothing else; everything that measures or
builds models lives here and talks to it through its public modules, its gRPC API and its
processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aegis_serve.cli_flags import run_command
from aegis_serve.settings import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aegis-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    doc.add_argument("--threads", type=int, default=0, help="CPU runs: threads of every system")
    doc.add_argument(
        "--infinity-bin", default="", help="CPU runs: infinity_emb executable (default venv)"
    )
    doc.add_argument(
        "--peers",
        default="infinity_torch,infinity_onnx",
        help="CPU runs: Infinity engines to measure too ('' = none)",
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
    tb.add_argument("--rounds", type=int, default=8, help="alternating off/on rounds")
    tb.add_argument("--sampling", default="1.0,0.1", help="head-sampling ratios of the on stacks")
    tb.add_argument("--requests", type=int, default=200, help="per round and stack, 1 in flight")
    tb.add_argument("--throughput-requests", type=int, default=1500, help="per round and stack")
    tb.add_argument("--concurrency", type=int, default=64, help="for the throughput runs")
    tb.add_argument("--out-dir", default="docs")

    ib = bench_sub.add_parser(
        "index", help="index storage settings (usearch): bytes/doc, queries/s, nDCG@10"
    )
    ib.add_argument("--split", default="test", choices=["dev", "test"])
    ib.add_argument("--size", default="full", choices=["full", "tiny"])
    ib.add_argument("--tasks", default="", help="comma-separated suite tasks (default: all)")
    ib.add_argument("--target", default="", help="embed through this running gateway")
    ib.add_argument("--query-model", default="builtin:query")
    ib.add_argument("--document-model", default="builtin:document")
    ib.add_argument("--threads", type=int, default=1, help="usearch search threads")
    ib.add_argument("--out-dir", default="docs")

    tc = bench_sub.add_parser(
        "telemetry-cost", help="telemetry's instructions per Embed call, off vs on (callgrind)"
    )
    tc.add_argument("--model", default="builtin:query")
    tc.add_argument("--backend", default="onnx", choices=BACKENDS, help="the encoder's runtime")
    tc.add_argument("--sampling", default="0.1,1.0", help="head-sampling ratios of the on runs")
    tc.add_argument("--requests", type=int, default=200, help="sequential Embed calls counted")
    tc.add_argument("--warmup", type=int, default=20, help="calls before the counted window")
    tc.add_argument("--counter", default="callgrind", choices=["callgrind", "cpu"])
    tc.add_argument("--real-model", action="store_true", help="no stub forward pass (slow)")
    tc.add_argument("--model-calls", type=int, default=5, help="real forward passes counted")
    tc.add_argument("--out-dir", default="docs")

    chaos = sub.add_parser("chaos", help="fault suite: kill/SIGTERM replicas, overload, fuzz")
    from aegis_lab.chaos.scenarios import SCENARIOS

    chaos.add_argument("--scenario", action="append", choices=list(SCENARIOS), default=[],
                       help="run only these (repeatable; default: all)")  # fmt: skip
    size = chaos.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help="CI-sized load (default)")
    size.add_argument("--long", action="store_true", help="report-sized load (minutes)")
    size.add_argument("--soak", action="store_true", help="only the soak scenario, for 30 minutes")
    chaos.add_argument("--report", action="store_true", help="write docs/reliability.md + JSON")
    chaos.add_argument("--model", default="builtin:query", help="served by both pools")
    chaos.add_argument("--threads", type=int, default=1, help="torch threads per encoder")
    chaos.add_argument("--max-queue-texts", type=int, default=64, help="encoder queue bound")
    chaos.add_argument("--seed", type=int, default=0, help="texts and fuzz examples")
    chaos.add_argument("--no-progress", action="store_true")
    chaos.add_argument("--out-md", default="docs/reliability.md")
    chaos.add_argument("--out-json", default="docs/results/reliability.json")

    dist = sub.add_parser("distill", help="distill a query student into the teacher's space")
    from aegis_lab.training import add_arguments as distill_arguments

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
    ev.add_argument(
        "--out-md",
        default="",
        help="default: docs/alignment.md (--suite), else alignment-wordnet.md",
    )
    ev.add_argument(
        "--out-json",
        default="",
        help="default: docs/results/alignment.json (--suite), else alignment_wordnet.json",
    )
    ev.add_argument("--notes", default="", help="Markdown file appended to the report")
    ev.add_argument(
        "--suite",
        action="store_true",
        help="score on the multi-domain evaluation suite (every task, macro, frontier) instead "
        "of --dataset",
    )
    ev.add_argument(
        "--student",
        action="append",
        default=[],
        help="NAME=MODEL a query student of the suite frontier (repeatable; --query-model is "
        "added as 'default' unless one is named by --default)",
    )
    ev.add_argument("--default", default="", help="the --student NAME the targets are checked on")
    ev.add_argument(
        "--all-student-documents",
        action="store_true",
        help="embed the documents with every student (student→student rows for all, not just "
        "the default; documents are most of the cost)",
    )
    ev.add_argument("--split", choices=["dev", "test"], default="test", help="suite split")
    ev.add_argument("--size", choices=["full", "tiny"], default="full", help="suite size")
    ev.add_argument("--tasks", default="", help="comma-separated suite tasks (default: all)")
    ev.add_argument("--threads", type=int, default=0, help="model threads (0 = all cores)")
    ev.add_argument("--out-frontier", default="docs/results/student_frontier.json")

    demo = sub.add_parser("demo", help="asymmetric search demo against a running gateway")
    demo.add_argument("--target", default="127.0.0.1:50051")
    demo.add_argument("--dimensions", type=int, default=0)

    exit_ = sub.add_parser(
        "layer-exit", help="write the teacher's first K layers (untrained) as a student dir"
    )
    exit_.add_argument("--teacher", default="builtin:document")
    exit_.add_argument("--layers", type=int, required=True)
    exit_.add_argument("--out", required=True)
    exit_.add_argument("--model-id", default="")

    from aegis_lab.training.linear_map import DESCRIPTION as ALIGN_DESCRIPTION
    from aegis_lab.training.linear_map import add_arguments as align_arguments

    align = sub.add_parser("align", help="fit the LS Dense map of builtin:query-linear",
                           description=ALIGN_DESCRIPTION)  # fmt: skip
    align_arguments(align)

    from aegis_lab.canaries import add_arguments as canaries_arguments

    can = sub.add_parser("canaries", help="write a model directory's canaries.json")
    canaries_arguments(can)

    from aegis_lab.data.query_corpus import add_arguments as corpus_arguments

    corpus = sub.add_parser("corpus", help="query-distribution training corpus (build)")
    corpus_arguments(corpus)
    return parser


def _cmd_demo(ns: argparse.Namespace) -> int:
    from aegis_lab.demo import run_demo

    return run_demo(ns.target, ns.dimensions)


def _cmd_bench(ns: argparse.Namespace) -> int:
    if ns.bench == "document":
        from aegis_lab.bench.document import main_args

        return main_args(ns)
    if ns.bench == "query":
        from aegis_lab.bench.query import main_args as query_main

        return query_main(ns)
    if ns.bench == "backends":
        from aegis_lab.bench.backends import main_args as backends_main

        return backends_main(ns)
    if ns.bench == "telemetry":
        from aegis_lab.bench.telemetry import main_args as telemetry_main

        return telemetry_main(ns)
    if ns.bench == "telemetry-cost":
        from aegis_lab.bench.telemetry_cost import main_args as telemetry_cost_main

        return telemetry_cost_main(ns)
    if ns.bench == "index":
        from aegis_lab.bench.index_quality import IndexBenchConfig, run_index_bench

        result = run_index_bench(IndexBenchConfig(
            split=ns.split, size=ns.size, tasks=[t for t in ns.tasks.split(",") if t] or None,
            target=ns.target, query_model=ns.query_model, document_model=ns.document_model,
            threads=ns.threads, out_dir=Path(ns.out_dir),
            command="aegis-lab " + " ".join(sys.argv[1:]),
        ))  # fmt: skip
        print(json.dumps(result["target"]))
        return 0
    raise SystemExit(f"unknown bench {ns.bench}")


def _cmd_chaos(ns: argparse.Namespace) -> int:
    from aegis_lab.chaos.run import main_args

    return main_args(ns)


def _cmd_distill(ns: argparse.Namespace) -> int:
    from aegis_lab.training.distill import config_from_args, distill

    summary = distill(config_from_args(ns))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_pack_student(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from aegis_lab.training.pack import strip_shared
    from aegis_serve.models.resolve import resolve_model

    try:
        source = resolve_model(ns.shared_with)
        manifest = strip_shared(Path(ns.model), source, ns.shared_with, Path(ns.out))
    except ValueError as exc:  # SharedWeightsError included
        raise SystemExit(str(exc)) from None
    print(json.dumps({"out": ns.out, "shared": sorted(manifest["tensors"])}))
    return 0


def _cmd_eval(ns: argparse.Namespace) -> int:
    from pathlib import Path

    if ns.suite:
        return _eval_suite(ns)
    ns.out_md = ns.out_md or "docs/alignment-wordnet.md"
    ns.out_json = ns.out_json or "docs/results/alignment_wordnet.json"

    from aegis_lab.evaluation.report import write_report
    from aegis_lab.evaluation.retrieval import run_eval

    baselines = dict(b.split("=", 1) for b in ns.baseline)
    result = run_eval(ns.query_model, ns.document_model, ns.dataset, baselines)
    notes = Path(ns.notes).read_text(encoding="utf-8") if ns.notes else ""
    command = "aegis-lab " + " ".join(sys.argv[1:])
    write_report(result, command, Path(ns.out_md), Path(ns.out_json), notes)
    print(json.dumps({"rows": len(result["rows"]), "eval_seconds": result["eval_seconds"]}))
    return 0


def _eval_suite(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from aegis_lab.evaluation.suite_eval import Candidate, evaluate_suite
    from aegis_lab.evaluation.suite_report import write_suite_report

    students = dict(s.split("=", 1) for s in ns.student)
    default = ns.default or "default"
    if default not in students:
        students = {default: ns.query_model, **students}
    result = evaluate_suite(
        [
            Candidate(name, spec, documents=ns.all_student_documents or name == default)
            for name, spec in students.items()
        ],
        ns.document_model,
        split=ns.split,
        size=ns.size,
        tasks=[t for t in ns.tasks.split(",") if t] or None,
        threads=ns.threads or None,
    )
    notes = Path(ns.notes).read_text(encoding="utf-8") if ns.notes else ""
    command = "aegis-lab " + " ".join(sys.argv[1:])
    md, js = ns.out_md or "docs/alignment.md", ns.out_json or "docs/results/alignment.json"
    out = write_suite_report(result, default, command, Path(md), Path(js),
                             Path(ns.out_frontier), notes)  # fmt: skip
    print(json.dumps({"targets": out["targets"], "eval_seconds": result["eval_seconds"]},
                     indent=1))  # fmt: skip
    return 0


def _cmd_corpus(ns: argparse.Namespace) -> int:
    from aegis_lab.data.query_corpus import main_args

    return main_args(ns)


def _cmd_layer_exit(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from aegis_lab.canaries import write_canaries
    from aegis_lab.training.student_model import write_layer_exit
    from aegis_serve.models.resolve import resolve_model

    try:
        out = write_layer_exit(resolve_model(ns.teacher), ns.layers, Path(ns.out), ns.model_id)
        write_canaries(out, "query")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(json.dumps({"out": str(out), "layers": ns.layers}))
    return 0


def _cmd_canaries(ns: argparse.Namespace) -> int:
    from aegis_lab.canaries import main_args

    return main_args(ns)


def _cmd_align(ns: argparse.Namespace) -> int:
    from aegis_lab.training.linear_map import run

    return run(ns, sys.argv[2:])


COMMANDS = {
    "align": _cmd_align,
    "bench": _cmd_bench,
    "canaries": _cmd_canaries,
    "chaos": _cmd_chaos,
    "corpus": _cmd_corpus,
    "demo": _cmd_demo,
    "distill": _cmd_distill,
    "eval": _cmd_eval,
    "layer-exit": _cmd_layer_exit,
    "pack-student": _cmd_pack_student,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
