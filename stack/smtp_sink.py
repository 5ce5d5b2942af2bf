"""SMTP sink for local email: accepts everything on 127.0.0.1:1025, stores each message as
<state>/mail/<time>-<id>.eml, and serves them as JSON on 127.0.0.1:1080.

HTTP API (for tests and the UI):
  GET    /messages   -> [{id, from, to, subject, message_id, body, received_at}], oldest first
  GET    /messages/<id>.eml -> the raw message
  DELETE /messages   -> remove all stored messages
  GET    /health     -> "ok"

Messages are plain files, so stopping and restarting the sink loses nothing.
Run: python -m stack.smtp_sink [--smtp-port 1025] [--http-port 1080] [--dir DIR]
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
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """aiosmtpd handler writing one .eml per message, envelope kept in X-Sink-* headers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        head = (
            f"X-Sink-Mail-From: {envelope.mail_from}\r\n"
            f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        content = envelope.original_content or b""
        tmp = self.directory / f".{msg_id}.tmp"
        tmp.write_bytes(head + content)
        os.replace(tmp, self.directory / f"{msg_id}.eml")  # readers never see half a file
        return "250 Message accepted for delivery"


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
    handler = MaildirHandler(directory)
    smtp_server = await loop.create_server(
        lambda: SMTP(handler, hostname="shopmesh-smtp-sink"), host, smtp_port
    )
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
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=1080)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.dir.resolve(), args.smtp_port, args.http_port))


if __name__ == "__main__":
    main()
