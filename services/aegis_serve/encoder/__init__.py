"""Encoder pool replica: queue, token-budget batching and the EncoderService."""
