"""SMTP sink for local email: accepts everything on 127.0.0.1:1025, stores each message as
<state>/mail/<time>-<id>.eml, and serves them as JSON on 127.0.0.1:1080.

HTTP API (for tests and the UI):
  GET    /messages   -> [{id, from, to, subject, message_id, body, received_at}], oldest first
  GET    /messages/<id>.eml -> the raw message
  DELETE /messages   -> remove all stored messages
  GET    /health     -> "ok"

Messages are plain files, so stopping and restarting the sink loses nothing. The file name
starts with the arrival time in ns (benchmarks and tests time delivery by it), and a message
is renamed into place whole, after which it is acknowledged (250).

The SMTP side is a small asyncio protocol rather than aiosmtpd: aiosmtpd reads DATA one line
at a time and parses every address with the email package's header parser, 1.26 ms of CPU
per message (476 msgs/s at 16 connections, measured in bench/results/notification.json
"sink"), slower than the notification service it should absorb. This one reads DATA in
bulk, answers pipelined commands (RFC 2920) in one write, and checks only what a sink must:
command order, the end-of-data marker and dot-unstuffing.
Run: python -m stack.smtp_sink [--smtp-port 1025] [--http-port 1080] --dir DIR [--host H]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from aiohttp import web

from shop.topology import SMTP_HTTP_PORT, SMTP_PORT

HOSTNAME = "shopmesh-smtp-sink"
MAX_LINE = 4096  # a command line longer than this is refused (RFC 5321: 512)
MAX_MESSAGE = 32 * 1024 * 1024
_END = b"\r\n.\r\n"


class Maildir:
    """One .eml file per message, the envelope kept in X-Sink-* headers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._dir = str(directory)

    def store(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> str:
        msg_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        head = f"X-Sink-Mail-From: {mail_from}\r\nX-Sink-Rcpt-To: {', '.join(rcpt_tos)}\r\n"
        tmp = f"{self._dir}/.{msg_id}.tmp"
        # os.open/os.write rather than open(): fewer layers per message on the hot path.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, head.encode() + content)
        finally:
            os.close(fd)
        os.replace(tmp, f"{self._dir}/{msg_id}.eml")  # readers never see half a file
        return msg_id


def _address(arg: str, keyword: str) -> str | None:
    """The <path> of `FROM:<a@b> PARAMS` / `TO:<a@b>`, or None when malformed."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].strip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    return rest[1 : rest.index(">")]


class SmtpSession(asyncio.Protocol):
    """One SMTP connection. Commands may arrive pipelined: every complete line in a read is
    answered, the replies sent in one write."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.data: bytearray | None = None  # in DATA: b"\r\n" + the content so far
        self.scanned = 0  # how far `data` holds no end-of-data marker
        self.greeted = False
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []
        self.quitting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(f"220 {HOSTNAME} ESMTP\r\n".encode())

    def data_received(self, chunk: bytes) -> None:
        replies: list[bytes] = []
        if self.data is not None:
            self.data += chunk
        else:
            self.buffer += chunk
        while self.transport is not None and not self.quitting:
            if self.data is not None:
                if not self._end_of_data(replies):
                    break
                continue
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    self.buffer.clear()
                    replies.append(b"500 Line too long\r\n")
                break
            line = bytes(self.buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self.buffer[: end + 1]
            reply = self._command(line)
            if reply:
                replies.append(reply)
            if self.data is not None:  # DATA: what follows the command is content
                self.data += self.buffer
                self.buffer.clear()
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))
        if self.quitting and self.transport is not None:
            self.transport.close()
            self.transport = None

    def _end_of_data(self, replies: list[bytes]) -> bool:
        assert self.data is not None
        end = self.data.find(_END, self.scanned)
        if end < 0:
            # Next time, search only what arrives (and the marker's bytes already here).
            self.scanned = max(0, len(self.data) - len(_END) + 1)
            if len(self.data) > MAX_MESSAGE:
                replies.append(b"552 Too much mail data\r\n")
                self.quitting = True
            return False
        # Undo dot-stuffing; the leading CRLF makes the first line like any other.
        content = bytes(self.data[: end + 2]).replace(b"\r\n..", b"\r\n.")[2:]
        self.buffer += self.data[end + len(_END) :]
        self.data = None
        self.maildir.store(self.mail_from or "", self.rcpt_tos, content)
        self.mail_from, self.rcpt_tos = None, []
        replies.append(b"250 Message accepted for delivery\r\n")
        return True

    def _command(self, line: str) -> bytes:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO" or verb == "HELO":
            self.greeted = True
            self.mail_from, self.rcpt_tos = None, []
            if verb == "HELO":
                return f"250 {HOSTNAME}\r\n".encode()
            return (
                f"250-{HOSTNAME}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n"
            ).encode()
        if verb == "MAIL":
            if not self.greeted:
                return b"503 Error: send HELO first\r\n"
            if self.mail_from is not None:
                return b"503 Error: nested MAIL command\r\n"
            address = _address(arg, "FROM:")
            if address is None:
                return b"501 Syntax: MAIL FROM:<address>\r\n"
            self.mail_from = address
            return b"250 OK\r\n"
        if verb == "RCPT":
            if self.mail_from is None:
                return b"503 Error: need MAIL command\r\n"
            address = _address(arg, "TO:")
            if not address:
                return b"501 Syntax: RCPT TO:<address>\r\n"
            self.rcpt_tos.append(address)
            return b"250 OK\r\n"
        if verb == "DATA":
            if not self.rcpt_tos:
                return b"503 Error: need RCPT command\r\n"
            self.data, self.scanned = bytearray(b"\r\n"), 0
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == "RSET":
            self.mail_from, self.rcpt_tos = None, []
            return b"250 OK\r\n"
        if verb == "NOOP":
            return b"250 OK\r\n"
        if verb == "VRFY":
            return b"252 Cannot VRFY user, but will accept message\r\n"
        if verb == "QUIT":
            self.quitting = True
            return b"221 Bye\r\n"
        return f"500 Error: command {verb!r} not recognized\r\n".encode()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _summary(path: Path) -> dict:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body_part = msg.get_body(preferencelist=("plain", "html"))
    body = body_part.get_content() if body_part is not None else ""
    return {
        "id": path.stem,
        "from": msg.get("X-Sink-Mail-From", msg.get("From", "")),
        "to": [a.strip() for a in str(msg.get("X-Sink-Rcpt-To", "")).split(",") if a.strip()],
        "header_from": str(msg.get("From", "")),
        "header_to": str(msg.get("To", "")),
        "subject": str(msg.get("Subject", "")),
        "message_id": str(msg.get("Message-ID", "")),
        "body": body,
        "received_at": int(path.stem.split("-")[0]) / 1e9,
    }


def make_app(directory: Path) -> web.Application:
    # A stored message never changes (written whole, then renamed into place), so each file
    # is parsed once: a long-lived sink holds thousands (a soak sends 10,000) and parsing
    # them all on every GET took seconds per call.
    parsed: dict[str, dict] = {}
    lock = threading.Lock()

    def read_all() -> list[dict]:
        paths = sorted(directory.glob("*.eml"))
        with lock:
            names = {p.name for p in paths}
            for gone in parsed.keys() - names:
                del parsed[gone]
            for p in paths:
                if p.name not in parsed:
                    try:
                        parsed[p.name] = _summary(p)
                    except FileNotFoundError:  # deleted meanwhile
                        continue
            return [parsed[p.name] for p in paths if p.name in parsed]

    def delete_all() -> None:
        for p in directory.glob("*.eml"):
            p.unlink(missing_ok=True)
        with lock:
            parsed.clear()

    async def list_messages(request: web.Request) -> web.Response:
        items = await asyncio.to_thread(read_all)
        to = request.query.get("to")
        if to:
            items = [m for m in items if to in m["to"]]
        return web.json_response(items)

    async def raw(request: web.Request) -> web.StreamResponse:
        path = directory / f"{request.match_info['id']}.eml"
        if not path.is_file() or path.parent != directory:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "message/rfc822"})

    async def clear(request: web.Request) -> web.Response:
        await asyncio.to_thread(delete_all)
        return web.json_response({"deleted": True})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def warm(app: web.Application) -> None:
        # Parse what an earlier run stored in the background, so the first GET is fast too.
        app["warm"] = asyncio.create_task(asyncio.to_thread(read_all))

    app = web.Application()
    app.on_startup.append(warm)
    app.router.add_get("/messages", list_messages)
    app.router.add_get("/messages/{id}.eml", raw)
    app.router.add_delete("/messages", clear)
    app.router.add_get("/health", health)
    return app


async def serve(directory: Path, smtp_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    maildir = Maildir(directory)
    smtp_server = await loop.create_server(lambda: SmtpSession(maildir), host, smtp_port)
    runner = web.AppRunner(make_app(directory), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, http_port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp sink: smtp {host}:{smtp_port} http {host}:{http_port} dir {directory}", flush=True)
    await stop.wait()
    smtp_server.close()
    await smtp_server.wait_closed()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=SMTP_HTTP_PORT)
    parser.add_argument("--dir", type=Path, required=True)
    # 0.0.0.0 in a container (compose, Kubernetes), where peers reach it by name.
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    run(serve(args.dir.resolve(), args.smtp_port, args.http_port, args.host))


if __name__ == "__main__":
    main()
