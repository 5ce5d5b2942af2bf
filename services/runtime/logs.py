"""Structured JSON logs: one object per line on stderr, with the service name and, inside a
call, the trace id. `log.info("rpc", extra={"fields": {...}})` adds fields.

Every line written inside a trace (a served call, a consumed event, a relay send, an email)
carries `trace_id` and `span_id`; process-level lines (startup, health transitions, client
libraries' reconnect messages) belong to no trace and carry none rather than a made-up one.

The per-call access line ("rpc": method, code, duration_ms, trace and span id) is written by
`AccessLog`, a fast path that builds the same object and serializes it once, without a
LogRecord, formatter or handler per call; `<SERVICE>_ACCESS_LOG=all|errors|off` chooses
which calls get one (errors = every status but OK). In a worker process of a multi-process
service (workers.py) every line also carries the `pid` that wrote it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from services.runtime import context, tracing, workers


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, pid: int | None = None) -> None:
        super().__init__()
        self.service = service
        self.pid = pid  # set in a worker process: which of the service's processes wrote it

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.pid is not None:
            out["pid"] = self.pid
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


class _Setup:
    """What setup_logging installed: the JSON handler AccessLog writes beside."""

    handler: logging.StreamHandler[Any] | None = None
    service: str = ""
    pid: int | None = None


def setup_logging(service: str, level: str = "INFO") -> None:
    """Replace the root handlers with one JSON handler (idempotent)."""
    pid = os.getpid() if workers.in_worker() else None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, pid))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _Setup.handler, _Setup.service, _Setup.pid = handler, service, pid
    # grpclib logs every handler exception itself; ours are already mapped and logged once.
    logging.getLogger("grpclib.server").setLevel(logging.CRITICAL)


ACCESS_LOG_MODES = ("all", "errors", "off")


class AccessLog:
    """One JSON line per served call, the same object JsonFormatter makes for
    `log.info("rpc", extra={"fields": ...})`, written straight to the JSON handler's stream.
    Without setup_logging's handler (an App in a test) it goes through `logger` instead.

    The line is one f-string: the parts that never change (service, logger, each method's
    name) are JSON-encoded once, the ids are hex, the code a status name and the duration a
    float, so json.dumps is needed only for an id a caller chose (x-request-id)."""

    __slots__ = ("_head", "_methods", "_sec", "_service", "_ts_prefix", "errors_only", "logger")

    def __init__(self, logger: logging.Logger, mode: str = "all") -> None:
        if mode not in ACCESS_LOG_MODES:
            raise ValueError(f"access log mode {mode!r}: expected one of {ACCESS_LOG_MODES}")
        self.logger = logger
        self.errors_only = mode == "errors"
        self._sec = -1
        self._ts_prefix = ""
        self._head = ""
        self._service: str | None = None
        self._methods: dict[str, str] = {}

    def write(self, method: str, code: str, elapsed_s: float, trace_id: str, span_id: str) -> None:
        if self.errors_only and code == "OK":
            return
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):  # cached by logging: a dict lookup
            return
        handler = _Setup.handler
        if handler is None or logging.getLogger().handlers != [handler]:
            logger.info(
                "rpc",
                extra={
                    "fields": {
                        "method": method,
                        "code": code,
                        "duration_ms": round(elapsed_s * 1000, 3),
                    }
                },
            )
            return
        now = time.time()
        sec = int(now)
        if sec != self._sec:  # strftime once per second, not per call
            self._sec = sec
            self._ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        if _Setup.service is not self._service:  # once per process (or setup_logging call)
            self._service = _Setup.service
            self._head = (
                f'"level": "info", "service": {json.dumps(self._service)}, '
                f'"logger": {json.dumps(logger.name)}, "msg": "rpc"'
                + (f', "pid": {_Setup.pid}' if _Setup.pid is not None else "")
            )
        m = self._methods.get(method)
        if m is None:
            m = self._methods[method] = json.dumps(method)
        if trace_id:
            if not (trace_id.isascii() and trace_id.isalnum()):
                trace_id = json.dumps(trace_id)[1:-1]  # a caller's x-request-id
            ids = f', "trace_id": "{trace_id}", "span_id": "{span_id}"'
        else:
            ids = ""
        line = (
            f'{{"ts": "{self._ts_prefix}.{int((now - sec) * 1000):03d}Z", {self._head}{ids}, '
            f'"method": {m}, "code": "{code}", "duration_ms": {round(elapsed_s * 1000, 3)!r}}}\n'
        )
        try:  # noqa: SIM105 (per call: no context manager object)
            handler.stream.write(line)  # stderr: line buffered, so whole lines
        except (OSError, ValueError):  # closed or broken stream: as logging would, go on
            pass
