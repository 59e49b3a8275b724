"""Public gateway: validation, routing to pools, Matryoshka truncation and quantization."""
