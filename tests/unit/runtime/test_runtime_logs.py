"""The JSON log line: one object, service and logger named, and the trace id of the span or
call it was written in, so a log line leads to its trace (and back)."""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime import context, tracing
from services.runtime.logs import AccessLog, JsonFormatter, setup_logging


def _line(formatter: JsonFormatter, msg: str, **fields: object) -> dict:
    record = logging.LogRecord("svc.test", logging.INFO, __file__, 1, msg, None, None)
    if fields:
        record.fields = fields  # what log.info(..., extra={"fields": ...}) sets
    return json.loads(formatter.format(record))


def test_line_inside_a_span_carries_its_trace_and_span_id() -> None:
    exporter = InMemorySpanExporter()
    tracing.install("svc", environ={}, exporter=exporter)
    try:
        formatter = JsonFormatter("svc")
        with tracing.tracer().start_as_current_span("work") as span:
            ctx = span.get_span_context()
            line = _line(formatter, "inside", order_id="o-1")
        assert line["trace_id"] == f"{ctx.trace_id:032x}"
        assert line["span_id"] == f"{ctx.span_id:016x}"
        assert (line["service"], line["logger"], line["msg"]) == ("svc", "svc.test", "inside")
        assert line["order_id"] == "o-1" and line["level"] == "info"
        # Outside any span or call there is no trace to name (startup, health, libraries).
        assert "trace_id" not in _line(formatter, "outside")
    finally:
        tracing.shutdown()


def test_call_served_without_a_tracer_still_logs_its_trace_id() -> None:
    formatter = JsonFormatter("svc")
    token = context.bind(context.RequestContext(method="/x.Y/Z", trace_id="ab" * 16))
    try:
        assert _line(formatter, "in a call")["trace_id"] == "ab" * 16
    finally:
        context._current.reset(token)


def test_exception_is_logged_in_the_line_not_as_extra_lines() -> None:
    formatter = JsonFormatter("svc")
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("svc", logging.ERROR, __file__, 1, "failed", None, exc_info)
    out = formatter.format(record)
    assert "\n" not in out  # one object per line, the traceback inside it
    assert "ValueError: boom" in json.loads(out)["exc"]


def test_access_line_is_the_object_json_formatter_would_write(capsys) -> None:
    setup_logging("svc-a")
    try:
        access = AccessLog(logging.getLogger("services.runtime.server"))
        cases = [
            ("/shop.product.v1.ProductService/GetProduct", "OK", 0.0012345, "ab" * 16, "cd" * 8),
            ("/x.Y/Z", "INVALID_ARGUMENT", 2.5, 'a "quoted"\\ id\x01', "ef" * 8),
            ("/x.Y/Z", "OK", 0.0, "", ""),
        ]
        for method, code, elapsed, trace_id, span_id in cases:
            access.write(method, code, elapsed, trace_id, span_id)
        lines = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().handlers.clear()
    assert len(lines) == 3
    for line, (method, code, elapsed, trace_id, span_id) in zip(lines, cases, strict=True):
        got = json.loads(line)
        assert got.pop("ts").endswith("Z")
        want = {"level": "info", "service": "svc-a", "logger": "services.runtime.server",
                "msg": "rpc"}  # fmt: skip
        if trace_id:
            want |= {"trace_id": trace_id, "span_id": span_id}
        want |= {"method": method, "code": code, "duration_ms": round(elapsed * 1000, 3)}
        assert got == want
        assert list(got) == list(want)  # same key order as JsonFormatter's lines
