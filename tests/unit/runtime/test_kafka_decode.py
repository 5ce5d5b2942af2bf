"""A record with bytes that are not UTF-8 in its key or headers is surfaced as a poison
record (error set), never raised: one bad producer must not stop a consumer."""

from __future__ import annotations

from types import SimpleNamespace

from services.runtime.kafka import HEADER_EVENT_ID, HEADER_TRACEPARENT, EventConsumer, KafkaConfig


class _RejectingSerde:
    async def decode(self, topic: str, value: bytes) -> tuple[str, dict]:
        raise ValueError("unknown magic byte")


async def test_non_utf8_key_and_headers_do_not_crash_decoding() -> None:
    consumer = EventConsumer(KafkaConfig(), _RejectingSerde(), ["t"], None)  # type: ignore[arg-type]
    msg = SimpleNamespace(
        topic="t",
        partition=0,
        offset=7,
        key=b"\xff\xfeorder",
        value=b"\x00garbage",
        headers=[(HEADER_EVENT_ID, b"\xc3\x28"), (HEADER_TRACEPARENT, b"\xff")],
        timestamp=1,
    )
    event = await consumer._decode(msg)
    assert event.error is not None
    assert event.key is not None and event.key.endswith("order")
    assert event.event_id == "\ufffd("
    assert event.raw == b"\x00garbage"
