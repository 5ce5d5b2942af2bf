"""SmtpMailer against SMTP servers on loopback: the real sink takes a stream of emails over
kept-open connections; a server that refuses (a stand-in: our sink accepts everything) maps
to the domain's split: 5xx recipient -> invalid address, 4xx -> retry, 5xx data -> rejected,
and a connection that failed is not reused."""

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
from services.notification.mailer import SmtpMailer
from stack.components import smtp_sink
from stack.runner import Stack
from tests.integration.notification.conftest import free_port

SENDER = "Shopmesh <no-reply@shopmesh.local>"


def _email(i: int, to: str = "alice@shop.test") -> Email:
    return Email(f"<e-{i}@n.test>", to, "Alice", f"Order {i}", f"text {i}\n", f"<p>{i}</p>\n")


async def test_emails_over_kept_open_connections_arrive_whole(tmp_path: Path):
    smtp, http, mail = free_port(), free_port(), tmp_path / "mail"
    sink = Stack([smtp_sink(smtp, http, mail)], tmp_path / "state")
    sink.up()
    mailer = SmtpMailer("127.0.0.1", smtp, SENDER, pool_size=4)
    try:
        await asyncio.gather(*(mailer.send(_email(i)) for i in range(40)))
        assert len(mailer._idle) <= 4  # reused, never more than the pool
    finally:
        await mailer.close()
        sink.down()
    stored = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
              for p in mail.glob("*.eml")]  # fmt: skip
    assert sorted(m["Message-ID"] for m in stored) == sorted(f"<e-{i}@n.test>" for i in range(40))
    assert {m["X-Sink-Mail-From"] for m in stored} == {"no-reply@shopmesh.local"}
    assert {m["X-Sink-Rcpt-To"] for m in stored} == {"alice@shop.test"}


class Refusing:
    """An SMTP server that answers RCPT and the end of DATA with the given replies."""

    def __init__(self, rcpt: bytes = b"250 OK", data: bytes = b"250 OK") -> None:
        self.rcpt, self.data = rcpt, data
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 refusing ESMTP\r\n")
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(self.data + b"\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-refusing\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                writer.write(self.rcpt + b"\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 OK\r\n")
        writer.close()


@pytest.fixture
async def refusing() -> AsyncIterator[tuple[Refusing, int]]:
    server_state = Refusing()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    yield server_state, server.sockets[0].getsockname()[1]
    server.close()


@pytest.mark.parametrize(
    ("rcpt", "data", "error"),
    [
        (b"550 no such user", b"250 OK", InvalidAddressError),
        (b"450 mailbox busy", b"250 OK", MailerUnavailableError),
        (b"250 OK", b"554 spam", MailRejectedError),
        (b"250 OK", b"451 try later", MailerUnavailableError),
    ],
)
async def test_refusals_map_to_the_domain_split_and_drop_the_connection(
    refusing, rcpt: bytes, data: bytes, error: type[Exception]
):
    server, port = refusing
    server.rcpt, server.data = rcpt, data
    mailer = SmtpMailer("127.0.0.1", port, SENDER, timeout=3, pool_size=2)
    try:
        with pytest.raises(error):
            await mailer.send(_email(1))
        assert mailer._idle == []
        server.rcpt = server.data = b"250 OK"
        await mailer.send(_email(2))  # a fresh connection, and it works
        assert server.connections == 2
    finally:
        await mailer.close()


async def test_nobody_listening_is_transient():
    mailer = SmtpMailer("127.0.0.1", free_port(), SENDER, timeout=2)
    with pytest.raises(MailerUnavailableError):
        await mailer.send(_email(1))
