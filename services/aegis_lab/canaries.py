"""Write a model directory's canaries: the texts the gateway checks replicas with, and the
vectors this model gives them now (models/canaries.py says why).

Run it whenever a model directory is built or its weights change: `aegis-lab distill` and
`aegis-lab layer-exit` call it on their outputs; `aegis-lab canaries DIR --role ...` does it
for any directory (the committed assets were made that way).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from aegis_serve.models.canaries import CANARIES_FILE, DEFAULT_CANARY_TEXTS, CanarySet
from aegis_serve.models.embedder import Embedder
from aegis_serve.protocol import NO_PROMPT


def role_prompt_name(embedder: Embedder, role: str) -> str:
    """The prompt an encoder of `role` applies when the caller names none (explicit, so the
    check does not depend on the checking side's defaults); NO_PROMPT for none."""
    if role in embedder.prompts:
        return role
    return embedder.cfg.default_prompt_name or NO_PROMPT


def write_canaries(
    model_dir: Path,
    role: str,
    *,
    embedder: Embedder | None = None,
    texts: Sequence[str] = DEFAULT_CANARY_TEXTS,
) -> Path:
    """Embed `texts` with the model in `model_dir` as an encoder of `role` would, and write
    them with their vectors to `model_dir/canaries.json`."""
    model_dir = Path(model_dir)
    embedder = embedder or Embedder(model_dir, device="cpu")
    prompt_name = role_prompt_name(embedder, role)
    vectors = embedder.embed(list(texts), None if prompt_name == NO_PROMPT else prompt_name)
    canaries = CanarySet(tuple(texts), vectors, prompt_name)
    path = model_dir / CANARIES_FILE
    path.write_text(
        canaries.to_json(
            space_id=embedder.space.space_id,
            model=embedder.space.model_id,
            role=role,
            note="reference vectors recorded when the model was built; the gateway embeds "
            "these texts through each replica and compares (aegis-serve gateway/canary.py)",
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="model directory (or builtin:...) to write into")
    parser.add_argument("--role", choices=["query", "document"], required=True)
    parser.add_argument("--out", default="", help="write canaries.json into this directory instead")


def main_args(ns: argparse.Namespace) -> int:
    from aegis_serve.models.resolve import resolve_model

    model_dir = resolve_model(ns.model_dir)
    embedder = Embedder(model_dir, device="cpu")
    written = write_canaries(Path(ns.out) if ns.out else model_dir, ns.role, embedder=embedder)
    print(json.dumps({"out": str(written), "texts": len(DEFAULT_CANARY_TEXTS)}))
    return 0
