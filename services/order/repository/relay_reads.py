"""The order store as the outbox relay reads it (claims in the store, the orders they belong
to, deleting sent claims) and the one-off move of documents written before version claims
into claims. A base class of MongoOrders, which holds the collections and the write
protocol these use.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pymongo
from pymongo.errors import DuplicateKeyError

from services.order.repository.claims import (
    bucket_of,
    claim_doc,
    claim_id,
)
from services.order.repository.mapping import (
    pack_entry,
)

# Documents from before version claims: True while they hold unpublished `pending_events`.
# An equality FerretDB v1 hands to PostgreSQL (an `$exists` filter reads every order).
OUTBOX_FLAG = "outbox"
LEGACY_FIELDS = ("pending_events", OUTBOX_FLAG, "outbox_since", "outbox_claim_until",
                 "creating_owner", "creating_until")  # fmt: skip
# orders_of: from this many claims of one bucket on, read that bucket's orders in one query.
BUCKET_READ_MIN = 8


class RelayReads:
    """The relay's side of MongoOrders."""

    async def pending_claims(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` claims, in no particular order. Without a filter FerretDB v1 passes
        the limit on to PostgreSQL: the cost is the claims returned, not the backlog."""
        return [d async for d in self.claims.find({}).limit(limit)]

    async def claims_in(self, buckets: Iterable[int]) -> list[dict[str, Any]]:
        """The claims written in these buckets (one indexed query each)."""
        return [c for b in buckets async for c in self.claims.find({"bucket": b})]

    async def orders_of(self, claims: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The stored `version` and `writes` of the orders of `claims`: one query per bucket
        the claims were written in (the order's last write carries the same `outbox_bucket`),
        then one lookup per order written again since."""
        wanted: dict[int, set[str]] = {}
        for c in claims:
            wanted.setdefault(int(c["bucket"]), set()).add(c["order_id"])
        found: dict[str, dict[str, Any]] = {}
        fields = {"version": 1, "writes": 1}
        for bucket, ids in wanted.items():
            if len(ids) < BUCKET_READ_MIN:
                continue  # a few: by `_id` (a whole bucket of orders would be read for them)
            async for d in self.orders.find({"outbox_bucket": bucket}, fields):
                if d["_id"] in ids:
                    found[d["_id"]] = d
        for ids in wanted.values():
            for order_id in ids - set(found):
                doc = await self.orders.find_one({"_id": order_id}, fields)
                if doc is not None:
                    found[order_id] = doc
        return found

    async def remove_claims(self, claims: Sequence[dict[str, Any]]) -> int:
        """Delete exactly these claims (id and token): one command per bucket they were
        written in, usually one. Returns how many were deleted."""
        by_bucket: dict[int, list[dict[str, Any]]] = {}
        for c in claims:
            by_bucket.setdefault(int(c["bucket"]), []).append(c)
        deleted = 0
        for bucket, group in by_bucket.items():
            res = await self.claims.delete_many(
                {
                    "bucket": bucket,
                    "_id": {"$in": [c["_id"] for c in group]},
                    "token": {"$in": [c["token"] for c in group]},
                }
            )
            deleted += res.deleted_count
        return deleted

    # ------------------------------------------------------------ before version claims

    async def flag_legacy_outbox(self, within_s: float = 600) -> int:
        """Set OUTBOX_FLAG on documents written before it existed that still have pending
        events. It scans every order on FerretDB v1, so the relay runs it once in the
        background with its own deadline, never in startup."""
        assert self.client is not None
        with pymongo.timeout(within_s):
            res = await self.orders.update_many(
                {"outbox_since": {"$exists": True}, OUTBOX_FLAG: {"$exists": False}},
                {"$set": {OUTBOX_FLAG: True}},
            )
        return res.modified_count

    async def migrate_legacy(self, limit: int = 500) -> int:
        """Move the pending events of documents written before version claims into claims
        (marked `legacy`: they were stored with their state, so they are published without
        a check) and clear them from the documents. Returns how many documents moved."""
        moved = 0
        async for doc in self.orders.find({OUTBOX_FLAG: True}).limit(limit):
            events = [pack_entry(e) for e in doc.get("pending_events") or []]
            now = dt.datetime.now(dt.UTC)
            since = doc.get("outbox_since") or now
            claim = claim_doc(doc["_id"], 0, uuid.uuid4().hex, events, bucket_of(now), now, since)
            claim |= {"_id": claim_id(doc["_id"], "legacy"), "legacy": True}  # type: ignore[arg-type]
            if events:
                try:
                    await self.claims.insert_one(claim)
                except DuplicateKeyError:
                    claim = await self.claims.find_one({"_id": claim["_id"]}) or claim
            cleared = {"$unset": dict.fromkeys(LEGACY_FIELDS, "")}
            if await self._write(doc["_id"], int(doc.get("version", 0)), cleared):
                moved += 1
                if events:
                    self._written(claim, True)
        return moved
