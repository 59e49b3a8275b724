"""aegis-serve: gRPC embedding service with an asymmetric query/document split."""
