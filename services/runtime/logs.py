"""Structured JSON logs: one object per line on stderr, with the service name and, inside a
call, the trace id. `log.info("rpc", extra={"fields": {...}})` adds fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from services.runtime import context, tracing


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # The OpenTelemetry span (an RPC, a consumed event, a relay send) names the trace;
        # the request context covers calls served without a tracer installed.
        ctx = context.current()
        trace_id = tracing.current_trace_id() or (ctx.trace_id if ctx is not None else "")
        if trace_id:
            out["trace_id"] = trace_id
            out["span_id"] = tracing.current_span_id()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Replace the root handlers with one JSON handler (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpclib logs every handler exception itself; ours are already mapped and logged once.
    logging.getLogger("grpclib.server").setLevel(logging.CRITICAL)
