"""The SMTP sink's mail as the notification tests read it: the files it stored after a
test started, and those of given event ids (the deterministic Message-ID names the event)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass

from stack.model import state_dir


@dataclass(frozen=True)
class Mail:
    message_id: str
    to: str
    subject: str
    text: str
    html: str


def sink_mail(since_ns: int) -> list[Mail]:
    """Messages the shared sink stored after `since_ns` (its files are <time_ns>-<id>.eml)."""
    out = []
    for path in sorted((state_dir() / "mail").glob("*.eml")):
        if int(path.name.split("-", 1)[0]) < since_ns:
            continue
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        out.append(
            Mail(
                str(msg["Message-ID"]),
                str(msg["To"]),
                str(msg["Subject"]),
                text.get_content() if text else "",
                html.get_content() if html else "",
            )
        )
    return out


def mail_for(since_ns: int, event_ids: set[str]) -> dict[str, list[Mail]]:
    """Sink mail of these events, by event id (the deterministic Message-ID names it)."""
    got: dict[str, list[Mail]] = {}
    for m in sink_mail(since_ns):
        eid = m.message_id.strip("<>").split("@", 1)[0]
        if eid in event_ids:
            got.setdefault(eid, []).append(m)
    return got
