"""A minimal SMTP client that pipelines (RFC 2920): one kept-open connection, one message per
transaction, MAIL, RCPT and DATA sent in one write and the content in a second.

Why hand-written: aiosmtplib, the maintained asyncio client, sends every command and waits
for its reply (it does not implement PIPELINING), so each email cost four writes, four
reads and four loop wake-ups; a profile of the notification service put a third of its CPU
there. No other maintained asyncio SMTP client pipelines either (the standard library's
smtplib is blocking and does not pipeline). This client does only what the notification
mailer needs: plain loopback/cluster SMTP (no TLS, no AUTH), one sender and one recipient
per message, and message bytes that already use CRLF line ends (mailer.to_bytes).

A server that does not advertise PIPELINING gets the commands one at a time. Any error
(a reply other than the expected one, a dropped connection, a timeout, a malformed reply)
leaves the connection closed: what the server holds of a half-done transaction is never
reused. The caller (mailer.SmtpMailer) maps the errors to the domain's retry/dead-letter
split.
"""

from __future__ import annotations

import asyncio

MAX_REPLY_LINE = 4096


class SmtpReplyError(Exception):
    """The server answered `command` (MAIL, RCPT, DATA, or "." for the content) with a reply
    other than the expected one."""

    def __init__(self, command: str, code: int, text: str) -> None:
        super().__init__(f"{command}: {code} {text}")
        self.command, self.code, self.text = command, code, text


class SmtpProtocolError(ConnectionError):
    """The connection closed or sent something that is not an SMTP reply."""


def dot_stuffed(content: bytes) -> bytes:
    """The content as DATA sends it: a leading '.' doubled on every line (RFC 5321 4.5.2),
    a final CRLF, then the end-of-data line."""
    if content.startswith(b"."):
        content = b"." + content
    content = content.replace(b"\r\n.", b"\r\n..")
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content + b".\r\n"


class SmtpConnection:
    """One open SMTP session after EHLO; `send` runs one mail transaction."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        extensions: frozenset[str],
    ) -> None:
        self._reader, self._writer = reader, writer
        self.timeout = timeout
        self.extensions = extensions
        self.pipelining = "PIPELINING" in extensions
        self._open = True

    @classmethod
    async def open(cls, host: str, port: int, timeout_s: float) -> SmtpConnection:
        """Connect, read the greeting, EHLO. Raises OSError, TimeoutError, SmtpReplyError or
        SmtpProtocolError."""
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_REPLY_LINE * 4)
            try:
                code, text = await _reply(reader)
                if code != 220:
                    raise SmtpReplyError("greeting", code, text)
                writer.write(b"EHLO " + _ehlo_name(writer) + b"\r\n")
                code, text = await _reply(reader)
                if code != 250:
                    raise SmtpReplyError("EHLO", code, text)
            except BaseException:
                writer.close()
                raise
        # The first line names the server; each further line is one extension keyword.
        keywords = frozenset(line.split(" ", 1)[0].upper() for line in text.split("\n")[1:] if line)
        return cls(reader, writer, timeout_s, keywords)

    @property
    def is_open(self) -> bool:
        return self._open and not self._writer.is_closing()

    async def send(self, mail_from: bytes, rcpt_to: bytes, content: bytes) -> None:
        """One message: `mail_from` as b"FROM:<a@b>", `rcpt_to` as b"TO:<c@d>", `content`
        with CRLF line ends. Returns once the server accepted it (250 after the content)."""
        if not self.is_open:
            raise SmtpProtocolError("connection closed")
        commands = (
            (b"MAIL", b"MAIL " + mail_from + b"\r\n", (250,)),
            (b"RCPT", b"RCPT " + rcpt_to + b"\r\n", (250, 251)),
            (b"DATA", b"DATA\r\n", (354,)),
        )
        try:
            async with asyncio.timeout(self.timeout):
                if self.pipelining:
                    self._writer.write(b"".join(c[1] for c in commands))
                    # Every reply is read before judging any, and the first failure names
                    # the cause: a refused MAIL makes RCPT and DATA fail too (503).
                    replies = [await _reply(self._reader) for _ in commands]
                    for (name, _, ok), (code, text) in zip(commands, replies, strict=True):
                        if code not in ok:
                            raise SmtpReplyError(name.decode(), code, text)
                else:
                    for name, line, ok in commands:
                        self._writer.write(line)
                        code, text = await _reply(self._reader)
                        if code not in ok:
                            raise SmtpReplyError(name.decode(), code, text)
                self._writer.write(dot_stuffed(content))
                code, text = await _reply(self._reader)
                if code != 250:
                    raise SmtpReplyError(".", code, text)
        except BaseException:
            # A half-done transaction (or a reply not read yet) must not meet the next
            # message: this connection is done.
            self.close()
            raise

    def close(self) -> None:
        self._open = False
        self._writer.close()

    async def quit(self) -> None:
        """QUIT politely (bounded by the timeout), then close."""
        if not self.is_open:
            return
        try:
            async with asyncio.timeout(self.timeout):
                self._writer.write(b"QUIT\r\n")
                await _reply(self._reader)
        except (OSError, TimeoutError, SmtpProtocolError):
            pass
        finally:
            self.close()


def _ehlo_name(writer: asyncio.StreamWriter) -> bytes:
    """Our address as an address literal (RFC 5321 4.1.3): no DNS lookup of our own name."""
    sockname = writer.get_extra_info("sockname")
    host = sockname[0] if sockname else "127.0.0.1"
    return (f"[IPv6:{host}]" if ":" in host else f"[{host}]").encode("ascii")


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One reply, multi-line ones (`250-...`) joined with newlines: (code, text)."""
    lines: list[str] = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise SmtpProtocolError("connection closed by the server") from None
        except asyncio.LimitOverrunError:
            raise SmtpProtocolError("reply line too long") from None
        if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
            raise SmtpProtocolError(f"not an SMTP reply: {line[:80]!r}")
        lines.append(line[4:].rstrip(b"\r\n").decode("utf-8", "replace"))
        if line[3:4] != b"-":
            return int(line[:3]), "\n".join(lines)
