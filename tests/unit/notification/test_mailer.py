"""The hand-written MIME of mailer.to_bytes, read back by the standard library's parser: what
a mail client shows must be exactly what the templates rendered."""

import email
import email.policy

import pytest

from services.notification.domain import Email
from services.notification.mailer import to_bytes

SENDER = "Shopmesh <no-reply@shopmesh.local>"


def _email(**kw: str) -> Email:
    fields = {
        "message_id": "<e-1@n.test>",
        "to": "alice@shop.test",
        "to_name": "Alice",
        "subject": "Order ord-7 confirmed - total USD 14.50",
        "text": "Hello Alice,\n\n  2 x Mug  USD 14.50\n\nOrder number: ord-7\n",
        "html": "<p>Hello Alice &amp; co,</p>\n<p>Total USD 14.50</p>\n",
    }
    return Email(**{**fields, **kw})


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _body(msg: email.message.EmailMessage, subtype: str) -> str:
    """A part's decoded text; MIME's canonical line break is CRLF, the templates' LF."""
    return msg.get_body((subtype,)).get_content().replace("\r\n", "\n")


def test_headers_and_both_bodies_read_back_exactly():
    mail = _email()
    msg = _parse(to_bytes(mail, SENDER, date="Tue, 01 Dec 2026 10:00:00 GMT"))
    assert msg["From"] == SENDER
    assert msg["To"] == "Alice <alice@shop.test>"
    assert msg["Subject"] == mail.subject
    assert msg["Message-ID"] == "<e-1@n.test>"
    assert msg["Date"].datetime.isoformat() == "2026-12-01T10:00:00+00:00"
    assert msg.get_content_type() == "multipart/alternative"
    assert _body(msg, "plain") == mail.text
    assert _body(msg, "html") == mail.html
    assert not msg.defects


def test_every_line_is_crlf_and_short_enough_for_smtp():
    text = "x" * 3000 + "\n" + "Zoë ordered a ☕ mug\n"
    raw = to_bytes(_email(text=text, html=f"<p>{text}</p>"), SENDER)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF or CR
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5321 line limit
    assert raw.isascii()  # 7-bit: any relay takes it
    msg = _parse(raw)
    assert _body(msg, "plain") == text


def test_non_ascii_name_and_subject_are_encoded_words_that_decode_back():
    msg = _parse(
        to_bytes(_email(to_name="Zoë Ångström", subject="Ihre Bestellung für Zoë ✓"), SENDER)
    )
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert msg["To"].addresses[0].addr_spec == "alice@shop.test"
    assert msg["Subject"] == "Ihre Bestellung für Zoë ✓"


def test_a_name_with_specials_is_quoted_not_split_into_two_recipients():
    msg = _parse(to_bytes(_email(to_name='Doe, "Jane" <x@evil.test>'), SENDER))
    [addr] = msg["To"].addresses
    assert addr.addr_spec == "alice@shop.test"


@pytest.mark.parametrize("field", ["to_name", "subject"])
def test_line_breaks_in_user_input_cannot_add_headers(field: str):
    raw = to_bytes(_email(**{field: "Eve\r\nBcc: all@shop.test\nX-Evil: 1"}), SENDER)
    msg = _parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert raw.count(b"\r\nBcc:") == 0


def test_a_body_line_of_a_single_dot_survives():
    text = "before\n.\nafter\n"
    msg = _parse(to_bytes(_email(text=text), SENDER))
    assert _body(msg, "plain") == text
