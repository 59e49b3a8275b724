"""Request validation: every bad field gets INVALID_ARGUMENT naming the field (and index).

Split in two: checks that need nothing but the request (done first, cheaply), and checks
against what the served space offers (dims, layers), done once the route is known.
"""

from __future__ import annotations

from dataclasses import dataclass

from aegis.embed.v1 import embed_pb2
from aegis_serve.common.errors import invalid
from aegis_serve.gateway.quantize import ENCODINGS

ROLES = {embed_pb2.INPUT_TYPE_QUERY: "query", embed_pb2.INPUT_TYPE_DOCUMENT: "document"}
TRUNCATE_MODES = {embed_pb2.TRUNCATE_END, embed_pb2.TRUNCATE_NONE}


@dataclass(frozen=True)
class Limits:
    """Per-request limits enforced before any model work."""

    max_inputs: int
    max_input_chars: int


@dataclass(frozen=True)
class EmbedPlan:
    """A validated request, in the gateway's own terms."""

    inputs: list[str]
    role: str
    dims: int
    encoding: str
    layers: int
    reject_overlong: bool


def role_of(input_type: int) -> str:
    if input_type not in ROLES:
        if input_type == embed_pb2.INPUT_TYPE_UNSPECIFIED:
            raise invalid(
                "input_type is required: INPUT_TYPE_QUERY for search queries, "
                "INPUT_TYPE_DOCUMENT for texts to index"
            )
        raise invalid(f"input_type={input_type} is not a known InputType")
    return ROLES[input_type]


def check_inputs(inputs: list[str], limits: Limits) -> None:
    if not inputs:
        raise invalid("inputs must contain at least one text")
    if len(inputs) > limits.max_inputs:
        raise invalid(
            f"inputs has {len(inputs)} texts; the limit is {limits.max_inputs} per request "
            "(split it, or use EmbedStream)"
        )
    for i, text in enumerate(inputs):
        if not text:
            raise invalid(f"inputs[{i}] is empty")
        if len(text) > limits.max_input_chars:
            raise invalid(
                f"inputs[{i}] has {len(text)} characters; the limit is {limits.max_input_chars}"
            )


def validate_embed(req: embed_pb2.EmbedRequest, limits: Limits) -> EmbedPlan:
    """Checks that need only the request."""
    role = role_of(req.input_type)
    inputs = list(req.inputs)
    check_inputs(inputs, limits)
    if req.encoding not in ENCODINGS:
        raise invalid(f"encoding={req.encoding} is not a known Encoding")
    if req.truncate not in TRUNCATE_MODES:
        raise invalid(f"truncate={req.truncate} is not a known Truncate mode")
    if req.layers and role == "query":
        raise invalid(
            "layers applies to INPUT_TYPE_DOCUMENT only; queries always run the query model "
            "at full depth"
        )
    return EmbedPlan(
        inputs=inputs,
        role=role,
        dims=req.dimensions,
        encoding=ENCODINGS[req.encoding],
        layers=req.layers,
        reject_overlong=req.truncate == embed_pb2.TRUNCATE_NONE,
    )


def check_space_options(
    plan: EmbedPlan, matryoshka_dims: list[int], layer_options: list[int]
) -> int:
    """Validate dims/layers against what the space offers; return the effective dims."""
    if plan.dims and plan.dims not in matryoshka_dims:
        raise invalid(
            f"dimensions={plan.dims} is not offered by this space; choose one of "
            f"{matryoshka_dims} (0 = full)"
        )
    if plan.layers and plan.layers not in layer_options:
        raise invalid(
            f"layers={plan.layers} is not offered by the document model; choose one of "
            f"{layer_options} (0 = full depth)"
        )
    return plan.dims or matryoshka_dims[0]
