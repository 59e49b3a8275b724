"""What both sides (gateway and encoders) use: errors, the RPC boundary, server plumbing, logs."""
