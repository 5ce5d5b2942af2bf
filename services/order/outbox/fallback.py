"""The relay's fallback round: claims this process does not hold (another instance's, a dead
writer's, older than the grace period), taken per order through `outbox_claims` and
published only if their write landed (claims.verdict), in version order per order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from services.order.repository import Verdict, verdict

log = logging.getLogger(__name__)


# Store commands of one round in flight at once (reads or deletes of different buckets).
CONCURRENT_READS = 8


async def orders_of(repo: Any, claims: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """repo.orders_of, the claims' buckets read concurrently (CONCURRENT_READS at a time)."""
    by_bucket: dict[int, list[dict[str, Any]]] = {}
    for c in claims:
        by_bucket.setdefault(int(c["bucket"]), []).append(c)
    groups = list(by_bucket.values())
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(groups), CONCURRENT_READS):
        some = groups[i : i + CONCURRENT_READS]
        for got in await asyncio.gather(*(repo.orders_of(g) for g in some)):
            found.update(got)
    return found


def _in_version_order(claims: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable by version: each order's claims in the order its writes happened."""
    return sorted(claims, key=lambda c: int(c["version"]) if not c.get("legacy") else -1)


class FallbackRound:
    """The fallback half of OutboxRelay (which holds the attributes it reads)."""

    async def _send_stored(self) -> tuple[int, bool]:
        """One fallback round over claims in the store this relay does not hold, whole
        buckets at a time (one indexed query each): (events acknowledged, whether any claim
        was settled: then another round may find more right away)."""
        await self._producer()  # before reading: a down Kafka takes nothing
        now = dt.datetime.now(dt.UTC)

        def fresh(c: dict[str, Any]) -> bool:
            return c["_id"] not in self.held and now - c["at"] >= self.grace

        # The probe's claims choose the orders and buckets; they are read again whole once
        # the orders are taken. Reading their buckets before the take too cost FerretDB a
        # fifth of its CPU per event (it decodes every document it reads from PostgreSQL).
        probe = await self.repo.pending_claims(len(self.held) + self.batch)
        found = sorted((c for c in probe if fresh(c)), key=lambda c: int(c["bucket"]))
        if not found:
            return 0, False
        order_ids = list(dict.fromkeys(c["order_id"] for c in found))[: self.batch]
        chosen = set(order_ids)
        buckets = sorted({int(c["bucket"]) for c in found if c["order_id"] in chosen})
        token, won = await self._take_orders(order_ids, now)
        try:
            if not won:
                return 0, False
            # Read again now that the orders are ours: a relay that had them before us
            # deleted what it sent (it keeps them until then), so nothing goes out twice.
            taken = set(won)
            by_order: dict[str, list[dict[str, Any]]] = {}
            read = 0
            for i in range(0, len(buckets), CONCURRENT_READS):
                # Buckets at once: a round waits on its store round trips far more than on
                # FerretDB's CPU (a quarter of a core busy in a profile of a drain).
                some = buckets[i : i + CONCURRENT_READS]
                got = await asyncio.gather(*(self.repo.claims_in([b]) for b in some))
                for claims in got:  # ascending buckets: an order's earlier versions first
                    for c in claims:
                        if c["order_id"] in taken and fresh(c):
                            by_order.setdefault(c["order_id"], []).append(c)
                            read += 1
                if read >= self.batch:
                    break  # the rest of the taken orders' claims: a later round
            orders = await orders_of(self.repo, [c for cs in by_order.values() for c in cs])
            publish: list[dict[str, Any]] = []
            dropped = 0
            for order_id, claims in by_order.items():
                for c in _in_version_order(claims):
                    v = verdict(c, orders.get(order_id), now, self.repo.lock_lease)
                    if v is Verdict.WAIT:
                        break  # its write may land yet: it and later versions wait
                    if v is Verdict.PUBLISH:
                        publish.append(c)
                    else:
                        self._finish([c])
                        dropped += 1
            sent, again = await self._publish(publish) if publish else (0, [])
            await self.delete_done()
            return sent, len(publish) - len(again) + dropped > 0
        finally:
            await self.order_claims.delete_many({"owner": token})

    async def _take_orders(self, order_ids: list[str], now: dt.datetime) -> tuple[str, list[str]]:
        """Insert this pass's `outbox_claims`: the orders no other relay is publishing."""
        from pymongo.errors import BulkWriteError

        await self.order_claims.delete_many({"until": {"$lt": now}})  # dead relays' leases
        token = uuid.uuid4().hex
        docs = [{"_id": i, "owner": token, "until": now + self.lease} for i in order_ids]
        try:
            await self.order_claims.insert_many(docs, ordered=False)
            return token, order_ids
        except BulkWriteError as exc:
            lost = {docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])}
            return token, [i for i in order_ids if i not in lost]
