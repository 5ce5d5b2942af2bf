"""The local SMTP sink (stack/smtp_sink.py), a private instance: what a client sends is what
lands in the mail dir and the HTTP API, pipelined commands are answered in order, dot-stuffed
lines come back unstuffed, and commands out of order are refused without storing anything."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from stack.components import smtp_sink
from stack.runner import Stack
from tests.integration.notification.conftest import free_port


@pytest.fixture
def sink(tmp_path: Path):
    smtp, http = free_port(), free_port()
    mail = tmp_path / "mail"
    stack = Stack([smtp_sink(smtp, http, mail)], tmp_path / "state")
    stack.up()
    yield smtp, http, mail
    stack.down()


def _stored(mail: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(mail.glob("*.eml"))]


async def _talk(port: int, payload: bytes, replies: int) -> list[bytes]:
    """Send `payload` in one write, read `replies` reply lines after the greeting."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(payload)
        out = []
        while len(out) < replies:
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line, f"connection closed after {out}"
            if line[3:4] != b"-":  # the last line of a (multi-line) reply
                out.append(line)
        return out
    finally:
        writer.close()


async def test_aiosmtplib_message_is_stored_whole_and_listed(sink):
    smtp, http, mail = sink
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@shop.test", "Zoë <b@shop.test>", "Grüße"
    msg["Message-ID"] = "<m-1@shop.test>"
    msg.set_content("line one\n.starts with a dot\n..two dots\n.\nlast\n")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=smtp, start_tls=False)
    [raw] = _stored(mail)
    assert raw.startswith(b"X-Sink-Mail-From: a@shop.test\r\nX-Sink-Rcpt-To: b@shop.test\r\n")
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert back["Subject"] == "Grüße" and back["Message-ID"] == "<m-1@shop.test>"
    assert back.get_content().replace("\r\n", "\n") == msg.get_content()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}") as client:
        [listed] = (await client.get("/messages")).json()
    assert listed["to"] == ["b@shop.test"] and listed["message_id"] == "<m-1@shop.test>"


async def test_pipelined_commands_get_their_replies_in_order_and_store_both(sink):
    smtp, _, mail = sink
    payload = (
        b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n"
        b"Subject: one\r\n\r\n..dot\r\n.\r\n"
        b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<d@x.test>\r\nDATA\r\n"
        b"Subject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    )
    replies = await _talk(smtp, payload, 11)
    codes = [r[:3] for r in replies]
    assert codes == [b"250", b"250", b"250", b"250", b"354", b"250",
                     b"250", b"250", b"354", b"250", b"221"]  # fmt: skip
    one, two = _stored(mail)
    assert one.endswith(b"Subject: one\r\n\r\n.dot\r\n")
    assert b"X-Sink-Rcpt-To: b@x.test, c@x.test\r\n" in one
    assert two.endswith(b"Subject: two\r\n\r\nbody\r\n")


async def test_a_message_split_across_reads_is_stored_once_whole(sink):
    smtp, _, mail = sink
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp)
    try:
        await reader.readline()
        writer.write(b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        for _ in range(4):
            await reader.readline()
        body = b"Subject: big\r\n\r\n" + b"0123456789" * 20_000 + b"\r\n"
        for i in range(0, len(body), 7_001):  # the end marker's bytes in separate reads
            writer.write(body[i : i + 7_001])
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"\r\n")
        await asyncio.sleep(0.05)
        assert not _stored(mail), "stored before the end of data"
        writer.write(b".\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
    finally:
        writer.close()
    [raw] = _stored(mail)
    assert raw.endswith(body + b"\r\n")


async def test_commands_out_of_order_are_refused_and_store_nothing(sink):
    smtp, _, mail = sink
    replies = await _talk(
        smtp,
        b"MAIL FROM:<a@x.test>\r\nHELO c\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
        b"MAIL FROM:<a@x.test>\r\nMAIL FROM:<a@x.test>\r\nDATA\r\nMAIL TO:<x>\r\nFOO\r\n",
        9,
    )
    assert [r[:3] for r in replies] == [
        b"503", b"250", b"503", b"503", b"250", b"503", b"503", b"503", b"500",
    ]  # fmt: skip
    assert not _stored(mail)
