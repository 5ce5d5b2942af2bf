"""Orders in the MongoDB wire protocol (motor against FerretDB v1): document <-> domain
mapping, the per-order write lock, and the outbox fields the relay reads.

One order is one document. A state change and the events it emits are written by ONE
update (`pending_events` is appended in the same `$set`), so state and events never
disagree; the relay (outbox.py) publishes and removes them.

Why a lock, on a document store: FerretDB v1 applies an update as read, modify in Go,
write back, without a transaction (FerretDB#3040). Measured here: 30 concurrent
`update_one({_id, version: 0}, {$set: {version: 1}})` report 3 matches, and concurrent
`$push`/`$pull` on one array lose elements. What IS atomic is an insert under a unique
index. So every write to an order document runs under a lease lock acquired by inserting
`{_id: order_id}` into `order_locks` (exactly one inserter wins; a lease lets a crashed
holder's lock expire). Inside the lock, read-check-write is safe, which gives the versioned
compare-and-set that `save` promises (events appended with `$push`, `outbox_since` lowered
with `$min`, so the read fetches three small fields). Reads and writes filter by `_id` alone:
FerretDB v1 pushes simple equality filters down to PostgreSQL (on its SQLite backend, only a
lone `_id`) and evaluates anything else on every fetched row. New orders need no lock: the unique
(user_id, idempotency_key) index decides between racing inserts.

The creating request skips the lock for its first save. Its PENDING insert carries a write
lease (`creating_owner`, `creating_until`): the insert is the lock. Every other writer's
update matches only once that lease is gone or expired, so it waits (order_locks held,
polling) while the creator reserves stock; the creator writes unlocked only while at least
half its lease is left, and that write clears the lease. A new order thus costs one insert
and one update (it was a key lookup scanning the collection, an insert, and lock insert +
read + update + unlock); the key lookup runs only when the insert finds the key taken.
The lease is handed from `add` to `save` within the request's task (a contextvar claimed
once, so tasks it spawns cannot share it). All instances must run this protocol: code that
ignores `creating_until` must not write the same database.

With a backend that updates atomically (MongoDB, FerretDB v2) the lock can go;
test_ferretdb_update_is_not_atomic in tests/integration/order tells when.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pymongo
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from services.order.domain import (
    Address,
    Event,
    LineItem,
    Money,
    Order,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    OrderStoreUnavailableError,
)
from services.order.ports import Cursor
from services.runtime import tracing
from services.runtime.errors import Unavailable

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LOCK_LEASE = dt.timedelta(seconds=5)
LOCK_WAIT_S = 3.0


class OrderLockTimeout(Unavailable):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} is busy, retry")


@dataclass
class _Creation:
    """The write lease a successful `add` holds on its new order, for one `save`."""

    order_id: str
    owner: str
    until: dt.datetime
    claimed: bool = False


_CREATION: contextvars.ContextVar[_Creation | None] = contextvars.ContextVar(
    "order_creation", default=None
)


# ---------------------------------------------------------------- mapping


def _money(m: Money | None) -> dict[str, Any] | None:
    return (
        None
        if m is None
        else {"currency_code": m.currency_code, "units": m.units, "nanos": m.nanos}
    )


def _to_money(d: dict[str, Any] | None) -> Money | None:
    return None if d is None else Money(d["currency_code"], int(d["units"]), int(d["nanos"]))


def _line(line: OrderLine) -> dict[str, Any]:
    return {
        "product_id": line.product_id,
        "product_name": line.product_name,
        "quantity": line.quantity,
        "unit_price": _money(line.unit_price),
    }


def event_to_doc(event: Event) -> dict[str, Any]:
    """An outbox entry: the Avro record's fields (as shop.events.v1 names them) plus the
    record name and trace context the relay puts in headers."""
    if isinstance(event, OrderPlaced):
        name = "shop.events.v1.OrderPlaced"
        data: dict[str, Any] = {
            "lines": [_line(line) for line in event.lines],
            "total": _money(event.total),
            "shipping_city": event.shipping_city,
            "shipping_country_code": event.shipping_country_code,
        }
    else:
        name = "shop.events.v1.OrderStatusChanged"
        data = {
            "previous_status": event.previous_status.value,
            "status": event.status.value,
            "reason": event.reason,
        }
    data |= {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "order_id": event.order_id,
        "user_id": event.user_id,
    }
    trace = event.trace
    return {
        "id": event.event_id,
        "type": name,
        "occurred_at": event.occurred_at,
        "traceparent": trace.traceparent if trace else "",
        "tracestate": trace.tracestate if trace else "",
        "data": data,
    }


def _state(order: Order) -> dict[str, Any]:
    a = order.shipping_address
    return {
        "user_id": order.user_id,
        "idempotency_key": order.idempotency_key,
        "request_hash": order.request_hash,
        "status": order.status.value,
        "items": [{"product_id": i.product_id, "quantity": i.quantity} for i in order.items],
        "lines": [_line(line) for line in order.lines],
        "total": _money(order.total),
        "shipping_address": {
            "recipient_name": a.recipient_name,
            "line1": a.line1,
            "line2": a.line2,
            "city": a.city,
            "region": a.region,
            "postal_code": a.postal_code,
            "country_code": a.country_code,
        },
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "cancel_reason": order.cancel_reason,
        "release_pending": order.release_pending,
    }


def to_doc(order: Order) -> dict[str, Any]:
    """The stored document of `order`, without outbox and lock bookkeeping."""
    return {"_id": order.id, **_state(order), "version": order.version}


def from_doc(doc: dict[str, Any]) -> Order:
    return Order(
        id=doc["_id"],
        user_id=doc["user_id"],
        idempotency_key=doc["idempotency_key"],
        request_hash=doc.get("request_hash", ""),
        status=OrderStatus(doc["status"]),
        items=tuple(LineItem(i["product_id"], int(i["quantity"])) for i in doc.get("items", ())),
        shipping_address=Address(**doc["shipping_address"]),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        lines=tuple(
            OrderLine(
                line["product_id"],
                line["product_name"],
                int(line["quantity"]),
                _to_money(line["unit_price"]),  # type: ignore[arg-type]
            )
            for line in doc.get("lines", ())
        ),
        total=_to_money(doc.get("total")),
        cancel_reason=doc.get("cancel_reason", ""),
        release_pending=bool(doc.get("release_pending")),
        version=int(doc.get("version", 0)),
    )


# ---------------------------------------------------------------- the repository


# Commands in flight at once. FerretDB v1 holds two backend connections per update, delete
# or findAndModify (the query's, kept while it writes with another) and waits for them
# without a deadline, so clients x 2 must stay below its backend pool (stack/ferretdb:
# pool_max_conns=100) or every command waits forever.
MAX_POOL = 20
SOCKET_TIMEOUT_MS = 10_000
# True while an order has pending events (beside `outbox_since`, which orders them). The
# relay and the gauges query this equality: FerretDB v1 hands it to PostgreSQL, while an
# `$exists` filter made it read and decode every order (a 10 s timeout at ~8,000 orders).
OUTBOX_FLAG = "outbox"  # longer than any order operation (PlaceOrder's budget is less)


def _unreachable(exc: ConnectionFailure) -> OrderStoreUnavailableError:
    return OrderStoreUnavailableError(f"order store unreachable: {type(exc).__name__}")


P = ParamSpec("P")
T = TypeVar("T")


def _store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """One store operation: a CLIENT span `db.<operation>` in the caller's trace (motor runs
    pymongo on executor threads, where a command listener would lose the trace context), and
    the store being down (refused, timed out, no server selected) is UNAVAILABLE to callers,
    not an unexpected error: pymongo's ConnectionFailure -> a domain error. Outside a trace
    (the sweeper's idle polls every few seconds) no span: each would be a trace of its own."""
    attributes = {"db.system": "mongodb", "db.operation": fn.__name__}

    async def unreachable_is_unavailable(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except ConnectionFailure as exc:
            raise _unreachable(exc) from exc

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        if not tracing.current_trace_id():
            return await unreachable_is_unavailable(*args, **kwargs)
        with tracing.db_span(f"db.{fn.__name__}", "ferretdb", **attributes):
            return await unreachable_is_unavailable(*args, **kwargs)

    return call


class MongoOrders:
    """OrderRepository on motor; also the runtime Resource that opens the client."""

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

    @property
    def orders(self) -> AsyncIOMotorCollection:
        assert self.client is not None, "open() first"
        return self.client[self.database]["orders"]

    @property
    def locks(self) -> AsyncIOMotorCollection:
        assert self.client is not None, "open() first"
        return self.client[self.database]["order_locks"]

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
        await o.create_index([("outbox_since", ASCENDING)], name="outbox")
        # The relay's claim and the sweeper's release retry find their few documents by
        # these flags; without an index each is a collection scan.
        await o.create_index([(OUTBOX_FLAG, ASCENDING)], name="outbox_flag")
        await o.create_index(
            [("release_pending", ASCENDING), ("updated_at", ASCENDING)], name="release"
        )

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

    # ------------------------------------------------------------ the write lock

    @contextlib.asynccontextmanager
    async def locked(self, order_id: str) -> AsyncIterator[None]:
        owner = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        delay = 0.002
        while True:
            now = dt.datetime.now(dt.UTC)
            try:
                await self.locks.insert_one(
                    {"_id": order_id, "owner": owner, "until": now + self.lock_lease}
                )
                break
            except DuplicateKeyError:
                held = await self.locks.find_one({"_id": order_id})
                if held is not None and held["until"] < now:
                    # The holder crashed: its lease is over.
                    await self.locks.delete_one({"_id": order_id, "owner": held["owner"]})
                    continue
                if loop.time() > deadline:
                    raise OrderLockTimeout(order_id) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            await self.locks.delete_one({"_id": order_id, "owner": owner})

    @contextlib.asynccontextmanager
    async def locked_many(self, order_ids: Sequence[str]) -> AsyncIterator[set[str]]:
        """Lock many orders in one round trip, without waiting: yields the ids this caller
        got (busy ones are simply left out, for a batch job to retry later). Locks whose
        lease is over (their holder was killed) are taken over, as `locked` does."""
        owner = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        got: set[str] = set()
        todo = list(order_ids)
        for attempt in range(2):
            docs = [{"_id": i, "owner": owner, "until": now + self.lock_lease} for i in todo]
            busy: list[str] = []
            if docs:
                try:
                    await self.locks.insert_many(docs, ordered=False)
                except BulkWriteError as exc:
                    busy = [docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])]
            got |= set(todo) - set(busy)
            if not busy or attempt:
                break
            # Only a lease that is over goes (a live holder keeps its lock); a racer that
            # deletes the same stale lock still loses the unique insert to one winner.
            res = await self.locks.delete_many({"_id": {"$in": busy}, "until": {"$lt": now}})
            if not res.deleted_count:
                break
            todo = busy
        try:
            yield got
        finally:
            if got:
                await self.locks.delete_many({"_id": {"$in": list(got)}, "owner": owner})

    # ------------------------------------------------------------ OrderRepository

    @_store_call
    async def add(self, order: Order) -> bool:
        owner = uuid.uuid4().hex
        until = dt.datetime.now(dt.UTC) + self.lock_lease
        doc = to_doc(order) | {"pending_events": [], "outbox_claim_until": EPOCH}
        doc |= {"creating_owner": owner, "creating_until": until}
        try:
            await self.orders.insert_one(doc)
        except DuplicateKeyError:
            return False
        _CREATION.set(_Creation(order.id, owner, until))
        return True

    def _claim_creation(self, order_id: str) -> _Creation | None:
        """This task's lease on `order_id` if it inserted it and nobody used the lease yet.
        Claimed synchronously (no await), so of the tasks that inherited the contextvar
        exactly one gets it."""
        c = _CREATION.get()
        if c is None or c.claimed or c.order_id != order_id:
            return None
        c.claimed = True
        return c

    @_store_call
    async def get(self, order_id: str) -> Order | None:
        doc = await self.orders.find_one({"_id": order_id}, {"pending_events": 0})
        return from_doc(doc) if doc else None

    @_store_call
    async def get_by_key(self, user_id: str, idempotency_key: str) -> Order | None:
        doc = await self.orders.find_one(
            {"user_id": user_id, "idempotency_key": idempotency_key}, {"pending_events": 0}
        )
        return from_doc(doc) if doc else None

    @_store_call
    async def save(self, order: Order) -> bool:
        update: dict[str, Any] = {
            "$set": {**_state(order), "version": order.version + 1},
            "$unset": {"creating_owner": "", "creating_until": ""},
        }
        if order.events:
            # State and its events in one document write: the transactional outbox.
            update["$push"] = {"pending_events": {"$each": [event_to_doc(e) for e in order.events]}}
            update["$min"] = {"outbox_since": min(e.occurred_at for e in order.events)}
            update["$set"][OUTBOX_FLAG] = True
        creation = self._claim_creation(order.id)
        if creation is not None and await self._save_as_creator(order, creation, update):
            return self._saved(order)
        owner = creation.owner if creation is not None else None
        if await self._save_locked(order, update, owner):
            return self._saved(order)
        return False

    @staticmethod
    def _saved(order: Order) -> bool:
        order.events = []
        order.version += 1
        return True

    async def _save_as_creator(
        self, order: Order, creation: _Creation, update: dict[str, Any]
    ) -> bool:
        """Unlocked write under the insert's lease, while at least half of it is left (every
        other writer waits for the lease to end, and this write ends it). The filter is the
        `_id` alone: one index lookup (on FerretDB v1, through the GIN twin of the `_id` index
        that stack.ferretdb adds)."""
        if creation.until - dt.datetime.now(dt.UTC) < self.lock_lease / 2:
            return False  # too late to be sure the write lands inside the lease
        res = await self.orders.update_one({"_id": order.id}, update)
        return res.matched_count == 1

    async def _save_locked(self, order: Order, update: dict[str, Any], owner: str | None) -> bool:
        """Compare-and-set under the order lock (read by `_id`, check, write by `_id`). While
        a creating request's lease is live it waits, peeking without the lock (racers with
        one key would otherwise queue on the lock just to see the lease)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + LOCK_WAIT_S + self.lock_lease.total_seconds()
        delay = 0.002
        fields = {"version": 1, "creating_owner": 1, "creating_until": 1}
        while True:
            async with self.locked(order.id):
                current = await self.orders.find_one({"_id": order.id}, fields)
                if current is None or current.get("version", 0) != order.version:
                    return False
                if not self._leased(current, owner):
                    await self.orders.update_one({"_id": order.id}, update)
                    return True
            # The creating request's lease is live: let it finish (its write ends the lease;
            # a creator that died mid-reservation is waited out, the lease is short).
            while True:
                if loop.time() > give_up:
                    raise OrderLockTimeout(order.id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                current = await self.orders.find_one({"_id": order.id}, fields)
                if current is None or current.get("version", 0) != order.version:
                    return False
                if not self._leased(current, owner):
                    break

    @staticmethod
    def _leased(doc: dict[str, Any], owner: str | None) -> bool:
        """True while another request's creating lease on the order is live."""
        until = doc.get("creating_until")
        return (
            until is not None
            and until >= dt.datetime.now(dt.UTC)
            and doc.get("creating_owner") != owner
        )

    @_store_call
    async def retire_key(self, order: Order) -> None:
        async with self.locked(order.id):
            await self.orders.update_one(
                {"_id": order.id, "status": OrderStatus.FAILED.value},
                {"$set": {"idempotency_key": f"failed:{order.id}"}},
            )

    @_store_call
    async def mark_released(self, order_id: str) -> None:
        async with self.locked(order_id):
            await self.orders.update_one({"_id": order_id}, {"$set": {"release_pending": False}})

    @_store_call
    async def delete_failed(self, order_id: str) -> bool:
        async with self.locked(order_id):
            res = await self.orders.delete_one(
                {"_id": order_id, "status": OrderStatus.FAILED.value}
            )
        return res.deleted_count == 1

    @_store_call
    async def list_by_user(self, user_id: str, limit: int, after: Cursor | None) -> list[Order]:
        query: dict[str, Any] = {"user_id": user_id, "status": {"$ne": OrderStatus.FAILED.value}}
        if after is not None:
            query["$or"] = [
                {"created_at": {"$lt": after.created_at}},
                {"created_at": after.created_at, "_id": {"$lt": after.order_id}},
            ]
        cur = (
            self.orders.find(query, {"pending_events": 0})
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
                {"status": status.value, "updated_at": {"$lt": updated_before}},
                {"pending_events": 0},
            ).limit(limit - len(found))
            found += [from_doc(d) async for d in cur]
            if len(found) >= limit:
                break
        return found

    @_store_call
    async def find_release_pending(self, updated_before: dt.datetime, limit: int) -> list[Order]:
        cur = self.orders.find(
            {"release_pending": True, "updated_at": {"$lt": updated_before}},
            {"pending_events": 0},
        ).limit(limit)
        return [from_doc(d) async for d in cur]
