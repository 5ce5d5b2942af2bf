"""MongoOrders: the OrderRepository on motor against FerretDB v1, and the outbox the relay
drains (services/order/outbox/).

One order is one document. Why every write claims a version first (claims.py): FerretDB v1
applies an update as read, modify in Go, write back, without a transaction (FerretDB#3040).
Measured here: 30 concurrent `update_one({_id, version: 0}, {$set: {version: 1}})` report 3
matches, and concurrent `$push`/`$pull` on one array lose elements
(test_ferretdb_update_is_not_atomic). What IS atomic is an insert under a unique index. So a
write inserts its claim `<order id>:<version + 1>` (exactly one inserter wins), then updates
the order filtered by `{_id, version}`: writes of one order run one at a time, with no lock
to take and release. The claim carries the write's events, so the state and its
announcement are both durable before the relay sees either, and the relay publishes a claim
only once the order shows that its write landed (claims.verdict). A writer that finds the
version claimed waits while that claim's write may still land (at most the lease), then
reloads; a claim whose writer died is dropped once its lease is over.

A new order is one insert under the unique (user_id, idempotency_key) index (racing inserts
with one key: one wins), version 0. Placing it costs that insert, the claim of version 1
(with OrderPlaced) and the update to CONFIRMED: three commands, no lock, and the relay
deletes the claim with many others in one command.

Filters are `_id` (and the version) equalities: FerretDB v1 pushes equality filters down to
PostgreSQL (through the GIN twins of the `_id` index that stack.ferretdb adds) and evaluates
anything else on every row it fetched. With a backend that updates atomically (MongoDB,
FerretDB v2) the claims could shrink to the outbox alone; the test above tells when.

Documents written before version claims kept their events in `pending_events` (flag
OUTBOX_FLAG): `migrate_legacy` copies them into claims marked `legacy` and clears them.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from services.order.domain import Order, OrderStatus
from services.order.ports import Cursor
from services.order.repository.claims import (
    CLAIMS,
    Verdict,
    bucket_of,
    claim_doc,
    verdict,
)
from services.order.repository.commands import OrderLockTimeout, Written, _store_call
from services.order.repository.mapping import (
    BODY,
    _state,
    event_to_doc,
    from_doc,
    pack_entry,
    to_doc,
)
from services.order.repository.relay_reads import OUTBOX_FLAG, RelayReads

log = logging.getLogger(__name__)

LOCK_LEASE = dt.timedelta(seconds=5)  # a claim's write lands within it, or never
LOCK_WAIT_S = 3.0  # beyond the lease: how long a writer waits on another's claim
# Commands in flight at once. FerretDB v1 holds two backend connections per update, delete
# or findAndModify (the query's, kept while it writes with another) and waits for them
# without a deadline, so clients x 2 must stay below its backend pool (stack/ferretdb:
# pool_max_conns=100) or every command waits forever.
MAX_POOL = 20
SOCKET_TIMEOUT_MS = 10_000
# Not read by the domain: left out of every read (FerretDB still decodes them, the client
# does not).
INTERNAL = {"writes": 0, "pending_events": 0}


class MongoOrders(RelayReads):
    """OrderRepository on motor; also the runtime Resource that opens the client. (Not
    pymongo's own AsyncMongoClient: two same-run A/Bs (bench/results/order_place_ab.json)
    gave the same order CPU per PlaceOrder and a slower PlaceOrder, x0.78-0.85 at p50.)
    `on_written`, when set (by the relay of this process), gets every claim written here."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        lock_lease: dt.timedelta = LOCK_LEASE,
        max_pool: int = MAX_POOL,
    ) -> None:
        self.url = url
        self.database = database
        self.lock_lease = lock_lease
        self.max_pool = max_pool
        self.client: AsyncIOMotorClient | None = None
        self._orders: AsyncIOMotorCollection | None = None
        self._claims: AsyncIOMotorCollection | None = None
        self.on_written: Callable[[Written], None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        # socketTimeoutMS bounds every operation: a wedged server (FerretDB once stopped
        # answering createIndexes) must fail startup and health checks, not hang them with
        # the port never opened (Envoy then answers 503 "remote connection failure").
        self.client = AsyncIOMotorClient(
            self.url,
            tz_aware=True,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=2000,
            socketTimeoutMS=SOCKET_TIMEOUT_MS,
            maxPoolSize=self.max_pool,
        )
        await self.ensure_indexes()

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def health_checks(self) -> dict[str, tuple[Any, bool]]:
        async def ping() -> bool:
            assert self.client is not None
            return (await self.client.admin.command("ping")).get("ok") == 1.0

        return {"ferretdb": (ping, True)}

    # Made once per client: motor builds a database and a collection wrapper for every
    # `client[db][name]` (~10 us each, several per placed order).
    @property
    def orders(self) -> AsyncIOMotorCollection:
        assert self.client is not None, "open() first"
        if self._orders is None or self._orders.database.client is not self.client:
            self._orders = self.client[self.database]["orders"]
        return self._orders

    @property
    def claims(self) -> AsyncIOMotorCollection:
        """Version claims = the outbox (claims.py)."""
        assert self.client is not None, "open() first"
        if self._claims is None or self._claims.database.client is not self.client:
            self._claims = self.client[self.database][CLAIMS]
        return self._claims

    async def ensure_indexes(self) -> None:
        o = self.orders
        # The idempotency guarantee: racing inserts with one key, exactly one wins.
        await o.create_index(
            [("user_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            name="user_idempotency_key",
        )
        await o.create_index(
            [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="user_newest",
        )
        await o.create_index([("status", ASCENDING), ("updated_at", ASCENDING)], name="sweep")
        # Documents from before version claims (migrate_legacy finds them by this flag).
        await o.create_index([(OUTBOX_FLAG, ASCENDING)], name="outbox_flag")
        await o.create_index(
            [("release_pending", ASCENDING), ("updated_at", ASCENDING)], name="release"
        )
        # A relay checks many claims against their orders with one query per bucket.
        await o.create_index([("outbox_bucket", ASCENDING)], name="outbox_bucket")
        await self.claims.create_index([("bucket", ASCENDING)], name="claim_bucket")

    # ------------------------------------------------------------ the write protocol

    def _written(self, claim: dict[str, Any], landed: bool | None) -> None:
        if self.on_written is not None:
            self.on_written(Written(claim, landed))

    async def _write(
        self,
        order_id: str,
        version: int,
        update: dict[str, Any],
        events: list[str] | None = None,
        since: dt.datetime | None = None,
        where: dict[str, Any] | None = None,
        delete: bool = False,
    ) -> bool:
        """Take the order from `version` to `version + 1`: claim, then update (or delete)
        the document filtered by `_id`, `version` and `where`. False when the order is not
        at that version (or does not match `where`): reload and decide again."""
        now = dt.datetime.now(dt.UTC)
        claim = claim_doc(order_id, version + 1, uuid.uuid4().hex, events or [], 0, now, since)
        if not await self._claim(claim):
            return False
        bucket = claim["bucket"]
        if dt.datetime.now(dt.UTC) - claim["at"] > self.lock_lease / 2:
            # Too late to be sure the write lands inside the claim's lease.
            await self._drop(claim)
            return False
        match = {"_id": order_id, "version": version, **(where or {})}
        try:
            if delete:
                hit = (await self.orders.delete_one(match)).deleted_count == 1
            else:
                update = copy.copy(update)
                update["$set"] = {
                    **update.get("$set", {}),
                    "version": version + 1,
                    "outbox_bucket": bucket,
                }
                update["$push"] = {"writes": claim["token"]}
                hit = (await self.orders.update_one(match, update)).matched_count == 1
        except BaseException:
            self._written(claim, None)  # landed or not: the relay checks the order
            raise
        if hit:
            self._written(claim, True)
            return True
        await self._drop(claim)
        return False

    async def _claim(self, claim: dict[str, Any]) -> bool:
        """Insert the claim; False when its version is taken (the caller's view is stale).
        While another claim of the version may still land, wait for it."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lock_lease.total_seconds() + LOCK_WAIT_S
        delay = 0.002
        while True:
            # Its lease runs from the insert (not from a wait on another claim).
            claim["at"] = dt.datetime.now(dt.UTC)
            claim["bucket"] = bucket_of(claim["at"])
            try:
                await self.claims.insert_one(claim)
                return True
            except DuplicateKeyError:
                pass
            held = await self.claims.find_one({"_id": claim["_id"]})
            if held is None:
                continue  # dropped meanwhile: try again
            order = await self.orders.find_one(
                {"_id": claim["order_id"]}, {"version": 1, "writes": 1}
            )
            v = verdict(held, order, dt.datetime.now(dt.UTC), self.lock_lease)
            if v is Verdict.PUBLISH or order is None:
                return False
            if v is Verdict.DROP:
                if int(order.get("version", 0)) >= claim["version"]:
                    return False  # the version is taken: reload
                # Its writer died before writing: the claim goes, the version is free.
                await self.claims.delete_one({"_id": held["_id"], "token": held["token"]})
                continue
            if loop.time() > give_up:
                raise OrderLockTimeout(claim["order_id"])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _drop(self, claim: dict[str, Any]) -> None:
        """Remove our own claim of a write that did not happen (else the relay drops it)."""
        try:
            await self.claims.delete_one({"_id": claim["_id"], "token": claim["token"]})
        except Exception:
            self._written(claim, False)
            raise

    async def _current(self, order_id: str) -> dict[str, Any] | None:
        return await self.orders.find_one(
            {"_id": order_id}, {"version": 1, "status": 1, "release_pending": 1}
        )

    # ------------------------------------------------------------ OrderRepository

    @_store_call
    async def add(self, order: Order) -> bool:
        doc = to_doc(order) | {"writes": [], "outbox_bucket": bucket_of()}
        try:
            await self.orders.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    @_store_call
    async def get(self, order_id: str) -> Order | None:
        doc = await self.orders.find_one({"_id": order_id}, INTERNAL)
        return from_doc(doc) if doc else None

    @_store_call
    async def get_by_key(self, user_id: str, idempotency_key: str) -> Order | None:
        doc = await self.orders.find_one(
            {"user_id": user_id, "idempotency_key": idempotency_key}, INTERNAL
        )
        return from_doc(doc) if doc else None

    @_store_call
    async def save(self, order: Order) -> bool:
        events = [pack_entry(event_to_doc(e)) for e in order.events]
        since = min((e.occurred_at for e in order.events), default=None)
        # A document from before `body` loses the fields it now holds.
        update = {"$set": _state(order), "$unset": dict.fromkeys(BODY, "")}
        if not await self._write(order.id, order.version, update, events, since):
            return False
        order.events = []
        order.version += 1
        return True

    @_store_call
    async def retire_key(self, order: Order) -> None:
        failed = {"status": OrderStatus.FAILED.value}
        retired = {"$set": {"idempotency_key": f"failed:{order.id}"}}
        for _ in range(5):
            current = await self._current(order.id)
            if current is None or current["status"] != OrderStatus.FAILED.value:
                return
            if await self._write(order.id, int(current["version"]), retired, where=failed):
                return
        raise OrderLockTimeout(order.id)

    @_store_call
    async def mark_released(self, order_id: str) -> None:
        for _ in range(5):
            current = await self._current(order_id)
            if current is None or not current.get("release_pending"):
                return
            done = {"$set": {"release_pending": False}}
            if await self._write(order_id, int(current["version"]), done):
                return
        raise OrderLockTimeout(order_id)

    @_store_call
    async def delete_failed(self, order_id: str) -> bool:
        current = await self._current(order_id)
        if current is None or current["status"] != OrderStatus.FAILED.value:
            return False
        failed = {"status": OrderStatus.FAILED.value}
        return await self._write(order_id, int(current["version"]), {}, where=failed, delete=True)

    @_store_call
    async def list_by_user(self, user_id: str, limit: int, after: Cursor | None) -> list[Order]:
        query: dict[str, Any] = {"user_id": user_id, "status": {"$ne": OrderStatus.FAILED.value}}
        if after is not None:
            query["$or"] = [
                {"created_at": {"$lt": after.created_at}},
                {"created_at": after.created_at, "_id": {"$lt": after.order_id}},
            ]
        cur = (
            self.orders.find(query, INTERNAL)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [from_doc(d) async for d in cur]

    @_store_call
    async def find_stale(
        self, statuses: Sequence[OrderStatus], updated_before: dt.datetime, limit: int
    ) -> list[Order]:
        # One equality per status, not `$in`: FerretDB v1 hands equalities to PostgreSQL
        # and evaluates everything else itself, on every document (10,000 orders: seconds).
        found: list[Order] = []
        for status in statuses:
            cur = self.orders.find(
                {"status": status.value, "updated_at": {"$lt": updated_before}}, INTERNAL
            ).limit(limit - len(found))
            found += [from_doc(d) async for d in cur]
            if len(found) >= limit:
                break
        return found

    @_store_call
    async def find_release_pending(self, updated_before: dt.datetime, limit: int) -> list[Order]:
        cur = self.orders.find(
            {"release_pending": True, "updated_at": {"$lt": updated_before}}, INTERNAL
        ).limit(limit)
        return [from_doc(d) async for d in cur]
