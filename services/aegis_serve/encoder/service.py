"""EncoderService: the gRPC face of an `Encoder` (encoder/core.py), a few lines per RPC."""

from __future__ import annotations

import grpc

from aegis.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from aegis_serve.common.boundary import Boundary, unary_rpc
from aegis_serve.encoder.core import Encoder

SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    """Hands each call to the core; the boundary records it and maps its errors."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        role = encoder.role
        self.boundary = Boundary(SERVICE, encoder.observer.instruments, lambda _req, _resp: role)

    @unary_rpc
    async def Encode(
        self, request: encoder_pb2.EncodeRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.EncodeResponse:
        return await self.encoder.encode(
            request, context.invocation_metadata(), context.time_remaining()
        )

    @unary_rpc
    async def Tokenize(
        self, request: encoder_pb2.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.TokenizeResponse:
        return await self.encoder.tokenize_texts(request)

    async def GetInfo(
        self, request: encoder_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.GetInfoResponse:
        # Not traced or counted: the gateway's health probes call it every few seconds.
        return self.encoder.info
