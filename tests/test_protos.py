"""Committed stubs match the protos; the contract keeps the names DESIGN.md gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aegis.embed.v1 import embed_pb2
from aegis.encoder.v1 import encoder_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_generated_stubs_do_not_drift():
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_contract_names():
    service = embed_pb2.DESCRIPTOR.services_by_name["EmbedService"]
    assert set(service.methods_by_name) == {"Embed", "EmbedStream", "Tokenize", "GetInfo"}
    stream = service.methods_by_name["EmbedStream"]
    assert stream.client_streaming and stream.server_streaming
    fields = {f.name: f.number for f in embed_pb2.EmbedRequest.DESCRIPTOR.fields}
    assert fields == {
        "inputs": 1,
        "input_type": 2,
        "dimensions": 3,
        "encoding": 4,
        "layers": 5,
        "truncate": 6,
    }
    response = {f.name: f.number for f in embed_pb2.EmbedResponse.DESCRIPTOR.fields}
    assert {
        "embeddings": 1,
        "dimensions": 2,
        "encoding": 3,
        "model": 4,
        "encoder": 5,
        "usage": 6,
        "timing": 7,
    }.items() <= response.items()
    assert [v.name for v in embed_pb2.Encoding.DESCRIPTOR.values] == [
        "ENCODING_UNSPECIFIED",
        "ENCODING_FLOAT32",
        "ENCODING_FLOAT16",
        "ENCODING_INT8",
        "ENCODING_UINT8",
        "ENCODING_BINARY",
        "ENCODING_UBINARY",
    ]
    assert embed_pb2.DESCRIPTOR.GetOptions().go_package.endswith(";embedv1")
    assert embed_pb2.DESCRIPTOR.GetOptions().java_package == "dev.aegis.embed.v1"
    encoder = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"]
    assert set(encoder.methods_by_name) == {"Encode", "Tokenize", "GetInfo"}
