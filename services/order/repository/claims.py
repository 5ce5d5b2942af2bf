"""Version claims: how a write to an order is serialized on FerretDB v1, and the outbox entry
it carries. Pure (documents in, decisions out): the store (store.py) and the relay
(services/order/outbox/) do the I/O.

A write that takes an order from version v to v+1 first inserts the claim document
`{_id: "<order id>:<v+1>", token, version: v+1, events: [...], bucket, at}` into the
`outbox` collection, then updates the order with the filter `{_id, version: v}`, pushing
`token` onto the order's `writes` list. The insert is the one atomic step FerretDB v1 has
(a unique `_id`), so exactly one writer holds a version at a time: the conditional update
that follows never races another writer of the order (FerretDB applies an update as read,
modify, write without isolation; see store.py). A claim is the write's lock, and its
outbox entry in one document, written before the state it announces.

Its events are published only once the order's `writes` holds its token (`verdict`): a
claim whose write failed the version check, or whose writer died before writing, is
dropped, never published. The relay deletes claims after publishing (or dropping) them; a
late writer that claims a version again after that finds the order past it and fails its
update, so a token, never a version, identifies the write a claim belongs to.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from typing import Any

CLAIMS = "outbox"  # the collection of claims (= the outbox)


def claim_id(order_id: str, version: int | str) -> str:
    return f"{order_id}:{version}"


BUCKETS_PER_S = 1


def bucket_of(now: dt.datetime | None = None) -> int:
    """The second a write happened in (its bucket). Claims and the order documents they
    write carry it: FerretDB v1 pushes only equality filters down to PostgreSQL, so "the
    claims / orders of bucket b" is how a relay reads or deletes many in one indexed
    command. Not smaller: a command costs FerretDB ~0.5 ms beside ~0.1 ms per document, and
    a delete of a tenth of a second's claims cost 155 us per claim against 110 for a
    second's (the rest of its filter, `_id: {$in}`, FerretDB checks per document in Go)."""
    return int((now.timestamp() if now is not None else time.time()) * BUCKETS_PER_S)


def claim_doc(
    order_id: str,
    version: int,
    token: str,
    events: list[str],
    bucket: int,
    at: dt.datetime,
    since: dt.datetime | None = None,
) -> dict[str, Any]:
    """`events`: the packed outbox entries (mapping.pack_entry); `since`: when the oldest of
    them occurred (the backlog's age)."""
    doc = {
        "_id": claim_id(order_id, version),
        "order_id": order_id,
        "version": version,
        "token": token,
        "events": events,
        "bucket": bucket,
        "at": at,
    }
    if events:
        doc["since"] = since or at
    return doc


class Verdict(enum.Enum):
    PUBLISH = "publish"  # the write landed: its events go out, then the claim goes
    DROP = "drop"  # the write did not land and never will: delete the claim unpublished
    WAIT = "wait"  # the write may still be on its way


def verdict(
    claim: dict[str, Any], order: dict[str, Any] | None, now: dt.datetime, lease: dt.timedelta
) -> Verdict:
    """What a claim is worth, given the order document as stored now (None: no such order).

    The token in the order's `writes`: its write landed. The order at or past the claim's
    version without it: another write took that version. Older than the lease: its writer
    died or gave up (a writer only writes while its claim is younger than half the lease).
    A claim from before version claims (`legacy`) was copied out of a stored order: landed.
    """
    if claim.get("legacy"):
        return Verdict.PUBLISH
    if order is None:
        return Verdict.DROP  # deleted (a FAILED tombstone): it had nothing to announce
    if claim["token"] in (order.get("writes") or ()):
        return Verdict.PUBLISH
    if int(order.get("version", 0)) >= int(claim["version"]):
        return Verdict.DROP
    if now - claim["at"] > lease:
        return Verdict.DROP
    return Verdict.WAIT
