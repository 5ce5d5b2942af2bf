"""SMTP adapter (aiosmtplib): a small pool of kept-open connections, errors mapped to the
domain's retry/dead-letter split."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import aiosmtplib

from services.notification.domain import (
    Email,
    InvalidAddressError,
    MailerUnavailableError,
    MailRejectedError,
)


def to_message(email: Email, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = formataddr((email.to_name, email.to))
    msg["Subject"] = email.subject
    msg["Message-ID"] = email.message_id
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg.set_content(email.text)
    msg.add_alternative(email.html, subtype="html")
    return msg


class SmtpMailer:
    """Connections are reused (one SMTP handshake per connection, not per email) and at most
    `pool_size` are open; a connection that failed is dropped, the next send opens a new one."""

    def __init__(
        self, host: str, port: int, sender: str, timeout: float = 10.0, pool_size: int = 4
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def send(self, email: Email) -> None:
        message = to_message(email, self.sender)
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                if client is None or not client.is_connected:
                    client = aiosmtplib.SMTP(
                        hostname=self.host, port=self.port, timeout=self.timeout, start_tls=False
                    )
                    await client.connect()
                await client.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._drop(client)
                codes = [r.code for r in exc.recipients]
                if all(500 <= c < 600 for c in codes):
                    raise InvalidAddressError(f"recipient refused ({codes})") from None
                raise MailerUnavailableError(f"recipient deferred ({codes})") from None
            except aiosmtplib.SMTPResponseException as exc:
                self._drop(client)
                if 500 <= exc.code < 600:
                    raise MailRejectedError(f"SMTP {exc.code}: {exc.message}") from None
                raise MailerUnavailableError(f"SMTP {exc.code}: {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._drop(client)
                raise MailerUnavailableError(
                    f"SMTP {self.host}:{self.port}: {type(exc).__name__}"
                ) from None
            self._idle.append(client)

    def _drop(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            client.close()

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
