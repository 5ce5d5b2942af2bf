"""SMTP adapter (smtp_client, pipelined): a small pool of kept-open connections, errors
mapped to the domain's retry/dead-letter split, and the MIME encoding of our one message shape.

`to_bytes` writes the message itself instead of building an email.message.EmailMessage:
that object took 0.95 ms to build and 0.2 ms more to flatten per email, the largest CPU
cost of a notification. Our emails have one fixed shape (multipart/alternative, a UTF-8
text and HTML part), so the layout is written out and only the encodings come from the
standard library (quoted-printable from binascii, RFC 2047 words from email.header and
email.utils). tests/unit/notification/test_mailer.py parses the result back with the
email package.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from services.notification.domain import (
    Email,
    InvalidAddressError,
    MailerUnavailableError,
    MailRejectedError,
)
from services.notification.smtp_client import SmtpConnection, SmtpReplyError

# "=_" never occurs in quoted-printable text ("=" is always followed by two hex digits or
# a line break there), so this boundary cannot collide with a body.
_BOUNDARY = "=_shopmesh-alternative"
# The line break before a boundary belongs to the boundary (RFC 2046), hence the leading one.
_PART = (
    "\r\n--" + _BOUNDARY + "\r\n"
    'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)


def _one_line(value: str) -> str:
    """No CR, LF or other control whitespace in a header value (header injection)."""
    return " ".join(value.split())


def _text_header(value: str) -> str:
    value = _one_line(value)
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _address_header(name: str, address: str) -> str:
    # formataddr quotes an ASCII name and RFC 2047-encodes any other.
    return formataddr((_one_line(name), _one_line(address)), charset="utf-8")


@functools.lru_cache(maxsize=8)
def _from_header(sender: str) -> str:
    return _address_header(*parseaddr(sender))


def _quoted_printable(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    # istext: line breaks stay line breaks (CRLF in, CRLF out); long lines get soft breaks.
    return binascii.b2a_qp(body.encode("utf-8"), istext=True)


def to_bytes(email: Email, sender: str, date: str | None = None) -> bytes:
    """The email as a MIME message (CRLF line endings), ready for SMTP DATA."""
    head = (
        f"From: {_from_header(sender)}\r\n"
        f"To: {_address_header(email.to_name, email.to)}\r\n"
        f"Subject: {_text_header(email.subject)}\r\n"
        f"Message-ID: {_one_line(email.message_id)}\r\n"
        f"Date: {date or formatdate(usegmt=True)}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{_BOUNDARY}"\r\n\r\n'
    )
    return b"".join(
        (
            head.encode("ascii"),
            _PART.format(subtype="plain").encode("ascii"),
            _quoted_printable(email.text),
            _PART.format(subtype="html").encode("ascii"),
            _quoted_printable(email.html),
            f"\r\n--{_BOUNDARY}--\r\n".encode("ascii"),
        )
    )


class SmtpMailer:
    """Connections are reused (one SMTP handshake per connection, not per email) and at most
    `pool_size` are open; a connection that failed is dropped, the next send opens a new one.

    Each email is one pipelined transaction (smtp_client.SmtpConnection: MAIL, RCPT and DATA
    in one write, the content in a second). Both addresses are known-good (the sender is
    checked at start, the recipient by domain.check_address), so the envelope is written
    as is, without re-parsing."""

    def __init__(
        self, host: str, port: int, sender: str, timeout: float = 10.0, pool_size: int = 4
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        address = parseaddr(sender)[1]
        if not address or not address.isascii() or any(c in address for c in "<> \r\n"):
            raise ValueError(f"sender {sender!r}: not an ASCII address")
        self._mail_from = f"FROM:<{address}>".encode("ascii")
        self._idle: list[SmtpConnection] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def send(self, email: Email) -> None:
        message = to_bytes(email, self.sender)
        rcpt_to = f"TO:<{email.to}>".encode("ascii")  # check_address: ASCII, no specials
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or not conn.is_open:
                    conn = await SmtpConnection.open(self.host, self.port, self.timeout)
                # Any failure below closes the connection (SmtpConnection.send).
                await conn.send(self._mail_from, rcpt_to, message)
            except SmtpReplyError as exc:
                if conn is not None:
                    conn.close()
                permanent = 500 <= exc.code < 600
                if exc.command == "RCPT":
                    if permanent:
                        raise InvalidAddressError(f"recipient refused ({exc.code})") from None
                    raise MailerUnavailableError(f"recipient deferred ({exc.code})") from None
                if permanent and exc.command in ("MAIL", "DATA", "."):
                    raise MailRejectedError(f"SMTP {exc.code}: {exc.text}") from None
                raise MailerUnavailableError(f"SMTP {exc.command} {exc.code}: {exc.text}") from None
            except (OSError, TimeoutError) as exc:  # SmtpProtocolError is an OSError
                if conn is not None:
                    conn.close()
                raise MailerUnavailableError(
                    f"SMTP {self.host}:{self.port}: {type(exc).__name__}"
                ) from None
            self._idle.append(conn)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().quit()
