"""SMTP sink: messages sent over SMTP are stored and readable over HTTP, across restarts."""

import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest

from stack.components import smtp_sink
from stack.runner import Stack

pytestmark = pytest.mark.stack


def _message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "shop@shopmesh.test"
    msg["To"] = "alice@shopmesh.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@shopmesh.test>"
    msg.set_content("Your order has shipped.")
    return msg


async def test_sent_message_is_exposed_over_http(stack):
    stack.require("smtp-sink")
    subject = f"order {uuid.uuid4().hex}"
    msg = _message(subject)
    host, port = stack.smtp
    await aiosmtplib.send(msg, hostname=host, port=port)
    async with httpx.AsyncClient() as http:
        items = (await http.get(f"{stack.smtp_http}/messages", timeout=5)).json()
    [got] = [m for m in items if m["subject"] == subject]
    assert got["from"] == "shop@shopmesh.test"
    assert got["to"] == ["alice@shopmesh.test"]
    assert got["message_id"] == msg["Message-ID"]
    assert got["body"].strip() == "Your order has shipped."


async def test_restart_keeps_stored_mail(tmp_path, free_ports):
    """A private sink (own ports and state dir) so the shared one is never touched."""
    smtp_port, http_port = free_ports(2)
    private = Stack([smtp_sink(smtp_port, http_port, tmp_path / "mail")], tmp_path)
    private.up()
    try:
        await aiosmtplib.send(_message("kept"), hostname="127.0.0.1", port=smtp_port)
        private.down()
        private.up()
        async with httpx.AsyncClient() as http:
            items = (await http.get(f"http://127.0.0.1:{http_port}/messages", timeout=5)).json()
        assert [m["subject"] for m in items] == ["kept"]
        assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    finally:
        private.down()
