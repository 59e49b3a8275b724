"""Observability: OpenTelemetry traces and metrics (OTLP + Prometheus), trace-aware logs.

`providers` installs the SDK from the standard `OTEL_*` variables (nothing is exported
unless an endpoint or a /metrics port is configured), `instruments` holds every metric,
`rpc` opens the server span of each RPC and records its outcome (the lab's
`aegis_lab.otlp_receiver` is a small OTLP/gRPC sink for tests and the overhead benchmark).
"""
