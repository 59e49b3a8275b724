"""Logging setup: plain text by default, one JSON object per line with --log-json."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    """Structured logs for collectors, with trace and span ids; never includes request text
    (no code path logs inputs; messages name fields and indices instead)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # The span current where the line was logged (the RPC's, inside a handler), so a
        # log line leads to its trace and back.
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        for key in ("role",):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", json_lines: bool = False, name: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        prefix = f"[{name}] " if name else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        quiet_libraries()


# Library loggers whose INFO lines (and, for these, warnings) say nothing an operator acts on.
_QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
    "torch.onnx": logging.WARNING,
    # "torchvision is not installed. Skipping torchvision::nms" x4 on every ONNX export.
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "transformers": logging.ERROR,
}


def quiet_libraries() -> None:
    """No third-party notice walls at start: Hugging Face progress bars (a 100-ms weight load
    is not worth a bar) and advisory messages off, noisy library loggers raised. `--log-level
    DEBUG` keeps them all."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    if "transformers" in sys.modules:  # imported before the environment was set
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
