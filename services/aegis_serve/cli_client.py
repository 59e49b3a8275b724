"""`aegis-serve` commands that call a running gateway: embed, info, and an index of a
document collection (`index`, then `search` it with queries)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from aegis_serve.cli_flags import Command

__all__ = ["CLIENT_COMMANDS", "add_client_commands"]

DEFAULT_TARGET = "127.0.0.1:50051"
ENCODINGS = ["float32", "float16", "int8", "uint8", "binary", "ubinary"]


def add_client_commands(sub: Any) -> None:
    """The client subcommands on the `aegis-serve` parser."""
    emb = sub.add_parser("embed", help="embed texts through a gateway; prints JSON lines")
    emb.add_argument("texts", nargs="+")
    emb.add_argument("--type", dest="input_type", choices=["query", "document"], required=True)
    emb.add_argument("--dimensions", type=int, default=0)
    emb.add_argument("--encoding", default="float32", choices=ENCODINGS)
    emb.add_argument("--layers", type=int, default=0)
    emb.add_argument("--timeout", type=float, default=60.0)

    info = sub.add_parser("info", help="print the gateway's GetInfo as JSON")

    idx = sub.add_parser(
        "index",
        help="embed a document collection through a gateway into a usearch index "
        "(needs the index extra)",
        description="Documents: a .jsonl file (one object per line with `text` and an optional "
        "`id`) or a text file (one document per line). They go to the document pool once, as "
        "full-dim float32; the index keeps them as --storage at --dims, plus full-dim int8 "
        "vectors on disk for rescoring (--rescore).",
    )
    idx.add_argument("documents", type=Path)
    idx.add_argument("--out", type=Path, required=True, help="index directory (created)")
    idx.add_argument("--storage", choices=["binary", "int8", "float32"], default="binary")
    idx.add_argument(
        "--dims", type=int, default=256, help="Matryoshka dim kept in memory (0 = full)"
    )
    idx.add_argument(
        "--rescore",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep full-dim int8 vectors on disk and rescore candidates with them",
    )
    idx.add_argument(
        "--kind",
        choices=["flat", "hnsw"],
        default="flat",
        help="flat: exact search; hnsw: usearch's graph (approximate, faster at scale)",
    )
    idx.add_argument(
        "--rotate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store a projection fitted on the documents (top principal directions, mixed) "
        "instead of the first --dims dims; --no-rotate keeps the service's truncation",
    )
    idx.add_argument(
        "--rescore-multiplier",
        type=int,
        default=10,
        help="the index's candidates per result for rescoring (search may override)",
    )
    idx.add_argument("--batch-size", type=int, default=64, help="documents per request")
    idx.add_argument("--timeout", type=float, default=300.0)

    srch = sub.add_parser("search", help="search an index built by `aegis-serve index`")
    srch.add_argument("index", type=Path)
    srch.add_argument("queries", nargs="+")
    srch.add_argument("-k", type=int, default=10)
    srch.add_argument(
        "--rescore-multiplier",
        type=int,
        default=None,
        help="candidates per result for rescoring (default: the index's)",
    )
    srch.add_argument("--timeout", type=float, default=60.0)

    for cmd in (emb, info, idx, srch):
        cmd.add_argument("--target", default=DEFAULT_TARGET, help="gateway address")
        cmd.add_argument("--token", default=None, help="bearer token (env AEGIS_TOKEN)")
        cmd.add_argument(
            "--verbose",
            action="store_true",
            help="on failure, print the trailers and the traceback, not just the one-line error",
        )


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
        except (ValueError, OSError) as exc:  # bad files, options, a changed space
            print(f"error: {exc}", file=sys.stderr)
            if ns.verbose:
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


def read_documents(path: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) from a .jsonl file (`text`, optional `id`) or one document per line."""
    ids: list[str] = []
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    row = json.loads(line)
                    text = row["text"]
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{n}: expected a JSON object with a `text`") from None
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{path}:{n}: `text` must be a non-empty string")
                ids.append(str(row.get("id", len(ids))))
            else:
                text = line.rstrip("\n")
                ids.append(str(len(ids)))
            texts.append(text)
    if not texts:
        raise ValueError(f"{path} has no documents")
    return ids, texts


def _index_tools() -> Any:
    try:
        import aegis_client.index as tools
    except ImportError as exc:
        raise ValueError(f"{exc} (pip install 'aegis-serve[index]')") from None
    return tools


@_client_errors
def _cmd_index(ns: argparse.Namespace) -> int:
    from aegis_client import EmbedClient

    tools = _index_tools()
    ids, texts = read_documents(ns.documents)
    spec = tools.IndexSpec(storage=ns.storage, dims=ns.dims, rescore=ns.rescore, kind=ns.kind,
                           rescore_multiplier=ns.rescore_multiplier, rotate=ns.rotate)  # fmt: skip
    with EmbedClient(ns.target, timeout=ns.timeout, token=_token(ns)) as client:
        index = tools.build_index(client, texts, spec, batch_size=ns.batch_size, progress=True)
    out = index.save(ns.out)
    with (out / "documents.jsonl").open("w", encoding="utf-8") as f:
        for doc_id, text in zip(ids, texts, strict=True):
            f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    summary = {
        "index": str(out),
        "documents": index.count,
        "spec": spec.label(),
        "memory_bytes_per_doc": round(index.memory_bytes / index.count, 1),
        "rescore_bytes_per_doc": round(index.rescore_bytes / index.count, 1),
        "space_id": index.meta.get("document_space_id", ""),
    }
    print(json.dumps(summary))
    return 0


@_client_errors
def _cmd_search(ns: argparse.Namespace) -> int:
    from aegis_client import EmbedClient

    tools = _index_tools()
    index = tools.AsymmetricIndex.load(ns.index)
    docs_path = ns.index / "documents.jsonl"
    docs = (
        [json.loads(line) for line in docs_path.open(encoding="utf-8")]
        if docs_path.exists()
        else []
    )
    with EmbedClient(ns.target, timeout=ns.timeout, token=_token(ns)) as client:
        found = tools.search_texts(
            client, index, ns.queries, ns.k, rescore_multiplier=ns.rescore_multiplier
        )
    for query, keys, scores in zip(ns.queries, found.keys, found.scores, strict=True):
        for rank, (key, score) in enumerate(zip(keys, scores, strict=True), 1):
            if key < 0:
                continue
            doc = docs[key] if key < len(docs) else {"id": str(key), "text": ""}
            print(json.dumps({"query": query, "rank": rank, "id": doc["id"],
                              "score": round(float(score), 5), "text": doc["text"]},
                             ensure_ascii=False))  # fmt: skip
    return 0


CLIENT_COMMANDS: dict[str, Command] = {
    "embed": _cmd_embed,
    "info": _cmd_info,
    "index": _cmd_index,
    "search": _cmd_search,
}
