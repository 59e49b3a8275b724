"""Observability: OpenTelemetry traces and metrics (OTLP + Prometheus), trace-aware logs.

`providers` installs the SDK from the standard `OTEL_*` variables (nothing is exported
unless an endpoint or a /metrics port is configured), `instruments` holds every metric,
`rpc` opens the server span of each RPC and records its outcome, `receiver` is a small
OTLP/gRPC sink used by tests and the overhead benchmark.
"""
