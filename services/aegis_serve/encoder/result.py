"""One Encode call's result as an array, before (or instead of) going on the wire.

The encoder core produces it; the gRPC servicer turns it into an `EncodeResponse` (the float32
matrix as raw bytes). The gateway consumes the same shape from either kind of pool replica: a
remote one gives a zero-copy view of the response's bytes (`from_response`), an in-process
(embedded) one hands over the batcher's array as is, so the matrix is never serialized there.
Light on purpose (numpy and the generated stubs only): the gateway imports it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aegis.encoder.v1 import encoder_pb2


class MalformedResponse(ValueError):
    """An EncodeResponse whose matrix bytes do not match its declared shape."""


@dataclass(frozen=True)
class Encoded:
    """Rows of one Encode call (float32, one per text, in request order) and its accounting."""

    matrix: np.ndarray  # (texts, dim) float32
    token_counts: Sequence[int]
    queue_ns: int
    tokenization_ns: int
    inference_ns: int
    model: str
    layers: int

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])

    def to_response(self) -> encoder_pb2.EncodeResponse:
        """The wire form (aegis.encoder.v1.EncodeResponse): the matrix as little-endian bytes."""
        return encoder_pb2.EncodeResponse(
            matrix=self.matrix.astype("<f4", copy=False).tobytes(),
            rows=self.matrix.shape[0],
            cols=self.matrix.shape[1],
            token_counts=list(self.token_counts),
            queue_ns=self.queue_ns,
            tokenization_ns=self.tokenization_ns,
            inference_ns=self.inference_ns,
            model=self.model,
            layers=self.layers,
        )

    @classmethod
    def from_response(cls, resp: encoder_pb2.EncodeResponse) -> Encoded:
        """A read-only view of the response's bytes (no copy); raises MalformedResponse."""
        if len(resp.matrix) != 4 * resp.rows * resp.cols:
            raise MalformedResponse(
                f"matrix has {len(resp.matrix)} bytes for {resp.rows}x{resp.cols} float32"
            )
        matrix = np.frombuffer(resp.matrix, dtype="<f4").reshape(resp.rows, resp.cols)
        return cls(
            matrix=matrix,
            token_counts=list(resp.token_counts),
            queue_ns=resp.queue_ns,
            tokenization_ns=resp.tokenization_ns,
            inference_ns=resp.inference_ns,
            model=resp.model,
            layers=resp.layers,
        )
