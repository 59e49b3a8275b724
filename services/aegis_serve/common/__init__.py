"""Code shared by the gateway and the encoders (vector shaping, encodings)."""
