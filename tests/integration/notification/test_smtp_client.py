"""smtp_client (the pipelining SMTP client) and SmtpMailer on it, against the real sink and
scripted servers on loopback: MAIL/RCPT/DATA go out in one write, content survives
dot-stuffing byte for byte, and every failure of a pipelined transaction (a 4xx/5xx on any
command or on the content, a connection dropped at any point) maps to the domain's
transient/permanent split and leaves no connection half-used."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notification.domain import (
    Email,
    InvalidAddressError,
    MailerUnavailableError,
    MailRejectedError,
)
from services.notification.mailer import SmtpMailer, to_bytes
from services.notification.smtp_client import (
    SmtpConnection,
    SmtpProtocolError,
    SmtpReplyError,
    dot_stuffed,
)
from stack.components import smtp_sink
from stack.runner import Stack
from tests.integration.notification.conftest import free_port

SENDER = "Shopmesh <no-reply@shopmesh.local>"


def _email(i: int, text: str = "") -> Email:
    return Email(
        f"<p-{i}@n.test>", "bob@shop.test", "Bob", f"Order {i}", text or f"t {i}\n", "<p>x</p>\n"
    )


@pytest.fixture
def sink(tmp_path: Path):
    smtp, http, mail = free_port(), free_port(), tmp_path / "mail"
    stack = Stack([smtp_sink(smtp, http, mail)], tmp_path / "state")
    stack.up()
    yield smtp, mail
    stack.down()


def _stored(mail: Path) -> list[bytes]:
    """Each stored message without the sink's two X-Sink-* envelope lines."""
    out = []
    for p in sorted(mail.glob("*.eml")):
        raw = p.read_bytes()
        assert raw.startswith(b"X-Sink-Mail-From: ")
        out.append(raw.split(b"\r\n", 2)[2])
    return out


async def test_the_sink_advertises_pipelining_and_gets_content_byte_exact(sink):
    port, mail = sink
    conn = await SmtpConnection.open("127.0.0.1", port, 5)
    assert conn.pipelining
    # Lines starting with '.', a lone '.', and content without a final CRLF: dot-stuffing
    # and the end-of-data line must not change a byte of what is stored.
    contents = [
        b".starts with a dot\r\nSubject: x\r\n\r\n..two\r\n.\r\nend",
        b"Subject: plain\r\n\r\nbody\r\n",
        b"Subject: y\r\n\r\n.\r\n",
    ]
    try:
        for c in contents:
            await conn.send(b"FROM:<a@shop.test>", b"TO:<b@shop.test>", c)
        assert conn.is_open  # one connection for all of them
    finally:
        await conn.quit()
    expected = [c if c.endswith(b"\r\n") else c + b"\r\n" for c in contents]
    assert sorted(_stored(mail)) == sorted(expected)


def test_dot_stuffing():
    assert dot_stuffed(b".a\r\n.b\r\nc") == b"..a\r\n..b\r\nc\r\n.\r\n"
    assert dot_stuffed(b"x\r\n") == b"x\r\n.\r\n"


async def test_mailer_sends_many_emails_concurrently_into_the_sink(sink):
    port, mail = sink
    mailer = SmtpMailer("127.0.0.1", port, SENDER, pool_size=4)
    sent = [_email(i, text=f".dot line {i}\n..two\n") for i in range(60)]
    try:
        await asyncio.gather(*(mailer.send(e) for e in sent))
        assert 1 <= len(mailer._idle) <= 4
    finally:
        await mailer.close()
    stored = [email.message_from_bytes(raw, policy=email.policy.default) for raw in _stored(mail)]
    assert sorted(m["Message-ID"] for m in stored) == sorted(e.message_id for e in sent)
    for m in stored:
        i = int(m["Message-ID"][3:-8])
        text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert text == f".dot line {i}\n..two\n"


class Scripted:
    """An SMTP server with PIPELINING whose answers are scripted per command.

    `replies` overrides the reply of MAIL, RCPT, DATA or "." (the end of the content); a
    command in `drop_at` makes it close the connection instead of answering. It answers the
    MAIL, RCPT and DATA of a transaction only once it has read all three: a client that waits
    for each reply before the next command never gets one (it must pipeline)."""

    def __init__(self) -> None:
        self.replies: dict[bytes, bytes] = {}
        self.drop_at: bytes | None = None
        self.connections = 0
        self.messages: list[bytes] = []

    def answer(self, verb: bytes, default: bytes) -> bytes | None:
        if verb == self.drop_at:
            return None
        return self.replies.get(verb, default) + b"\r\n"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            line = await reader.readline()
            assert line.upper().startswith(b"EHLO ")
            writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            while True:
                group: list[bytes | None] = []
                for verb, ok in ((b"MAIL", b"250 OK"), (b"RCPT", b"250 OK"), (b"DATA", b"354 go")):
                    line = await reader.readline()
                    if not line or line.upper().startswith(b"QUIT"):
                        writer.write(b"221 bye\r\n")
                        return
                    assert line[:4].upper() == verb, line
                    group.append(self.answer(verb, ok))
                for reply in group:
                    if reply is None:
                        return  # dropped: the finally closes the connection
                    writer.write(reply)
                if not group[-1].startswith(b"354"):
                    continue  # no content follows a refused DATA
                content = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append(content)
                reply = self.answer(b".", b"250 queued")
                if reply is None:
                    return
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, int]]:
    state = Scripted()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, server.sockets[0].getsockname()[1]
    server.close()


async def test_commands_are_pipelined(scripted):
    """Scripted answers nothing before it has MAIL, RCPT and DATA: a lock-step client times
    out here."""
    server, port = scripted
    conn = await SmtpConnection.open("127.0.0.1", port, 2)
    try:
        await conn.send(b"FROM:<a@shop.test>", b"TO:<b@shop.test>", b"Subject: s\r\n\r\nhi\r\n")
        await conn.send(b"FROM:<a@shop.test>", b"TO:<c@shop.test>", b"Subject: t\r\n\r\nho\r\n")
    finally:
        await conn.quit()
    assert server.messages == [b"Subject: s\r\n\r\nhi\r\n.\r\n", b"Subject: t\r\n\r\nho\r\n.\r\n"]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("verb", "reply", "error"),
    [
        (b"MAIL", b"550 sender refused", MailRejectedError),
        (b"MAIL", b"451 local error", MailerUnavailableError),
        (b"RCPT", b"550 no such user", InvalidAddressError),
        (b"RCPT", b"450 mailbox busy", MailerUnavailableError),
        (b"DATA", b"554 no valid recipients", MailRejectedError),
        (b"DATA", b"451 try later", MailerUnavailableError),
        (b".", b"554 spam", MailRejectedError),
        (b".", b"452 out of storage", MailerUnavailableError),
    ],
)
async def test_a_refusal_of_any_pipelined_command_maps_to_the_domain_split(
    scripted, verb: bytes, reply: bytes, error: type[Exception]
):
    server, port = scripted
    mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=3, pool_size=1)
    try:
        await mailer.send(_email(0))
        server.replies = {verb: reply}
        with pytest.raises(error):
            await mailer.send(_email(1))
        assert mailer._idle == []  # the failed connection is not reused
        server.replies = {}
        await mailer.send(_email(2))  # a fresh connection, and it works
        assert server.connections == 2
    finally:
        await mailer.close()
    ids = [email.message_from_bytes(m)["Message-ID"] for m in server.messages]
    # A refusal after the content (".") leaves the content at the server, not accepted.
    assert ids == ["<p-0@n.test>", *(["<p-1@n.test>"] if verb == b"." else []), "<p-2@n.test>"]


@pytest.mark.parametrize("verb", [b"MAIL", b"DATA", b"."])
async def test_a_connection_dropped_mid_transaction_is_transient(scripted, verb: bytes):
    server, port = scripted
    mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=3, pool_size=1)
    try:
        server.drop_at = verb
        with pytest.raises(MailerUnavailableError):
            await mailer.send(_email(1))
        assert mailer._idle == []
        server.drop_at = None
        # The resend (what a retry of the event does) carries the same Message-ID.
        await mailer.send(_email(1))
    finally:
        await mailer.close()
    ids = [email.message_from_bytes(m)["Message-ID"] for m in server.messages]
    assert ids[-1] == "<p-1@n.test>"
    assert set(ids) == {"<p-1@n.test>"}


async def test_a_silent_server_times_out_as_transient():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n250-x\r\n")  # greeting, then half an EHLO answer
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=0.5)
        with pytest.raises(MailerUnavailableError):
            await mailer.send(_email(1))
    finally:
        server.close()


async def test_garbage_instead_of_a_reply_is_a_protocol_error():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello, this is not smtp\r\n")
        await reader.read()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SmtpProtocolError):
            await SmtpConnection.open("127.0.0.1", port, 2)
        with pytest.raises(SmtpReplyError):
            # A 554 greeting (RFC 5321: "no SMTP service here") is a refusal, not garbage.
            await _open_with_greeting(b"554 go away\r\n")
    finally:
        server.close()


async def _open_with_greeting(greeting: bytes) -> SmtpConnection:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    try:
        return await SmtpConnection.open("127.0.0.1", server.sockets[0].getsockname()[1], 2)
    finally:
        server.close()


def test_to_bytes_is_what_the_client_sends():
    """The mailer's bytes use CRLF only, which SmtpConnection.send relies on."""
    raw = to_bytes(_email(1, text="a\nb\r\nc\rd\n"), SENDER)
    assert b"\n" not in raw.replace(b"\r\n", b"")
