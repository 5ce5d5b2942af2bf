"""The outbox relay: publishes the `pending_events` of order documents to Kafka
(shop.orders.v1, key = order id, Avro via the registry) and then removes them.

Never runs in the request path; several relays may run (in the order process or alone:
`python -m services.order.outbox`). One pass:

1. claim: orders with pending events, oldest first; a relay claims an order by inserting
   `{_id: order_id, owner, until}` into `outbox_claims` (unique insert: one relay wins, and
   a lease lets a crashed relay's claims expire);
2. publish every pending event of the claimed orders, in order per order (same key, same
   partition, idempotent producer), and wait for acks=all;
3. under the order's write lock (repository.py says why), drop the acknowledged events
   and clear `outbox_since` when none is left; release the claims.

A crash between 2 and 3 republishes after the lease: at least once, consumers dedupe by
event id (the `event_id` header and field).

Kafka being down never stops the order service: `LazyProducer` starts the producer from the
relay loop, retrying with backoff, and reports it as the optional `kafka` health dependency
(NOT_SERVING until connected, and while publishes fail). Orders are still placed; their
events wait in the documents. The backlog gauges are refreshed on their own timer whether or
not Kafka answers, so a stuck outbox shows its growing age.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from services.order.metrics import OrderMetrics
from services.order.repository import OUTBOX_FLAG, MongoOrders
from services.runtime.kafka import EventProducer, TraceContext

log = logging.getLogger(__name__)

TOPIC = "shop.orders.v1"
MARK_ATTEMPTS = 4  # lock tries when dropping published events (sleeps 40, 80, 160 ms)
MARK_CHUNK = 8  # update statements per command (see _drop_events)
MARK_PARALLEL = 4  # such commands at once: <= 4 x 9 of FerretDB's 100 backend connections


def to_record(entry: dict[str, Any]) -> Any:
    """The generated Avro type (shop.events.v1) for an outbox entry."""
    from shop.events import v1

    cls = getattr(v1, entry["type"].rpartition(".")[2])
    return cls.parse_obj(entry["data"])


class LazyProducer:
    """The relay's producer as a runtime Resource that does not connect at open(): `get()`
    starts it on first use (the relay retries), so the process starts without Kafka."""

    def __init__(self, make: Callable[[], EventProducer]) -> None:
        self.make = make
        self.producer: EventProducer | None = None
        self.publishing = False  # connected and the last publish went through

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def health_checks(self) -> dict[str, tuple[Any, bool]]:
        async def kafka() -> bool:
            return self.producer is not None and self.publishing

        return {"kafka": (kafka, False)}  # optional: orders are placed without it

    async def get(self) -> EventProducer:
        if self.producer is None:
            candidate = self.make()
            try:
                await candidate.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await candidate.stop()  # aiokafka leaves its client open on a failed start
                raise
            self.producer = candidate
            self.publishing = True
        return self.producer


class OutboxRelay:
    def __init__(
        self,
        repo: MongoOrders,
        producer: EventProducer | LazyProducer,
        *,
        topic: str = TOPIC,
        batch: int = 200,
        lease: dt.timedelta = dt.timedelta(seconds=30),
        metrics: OrderMetrics | None = None,
    ) -> None:
        self.repo = repo
        self.lazy = producer if isinstance(producer, LazyProducer) else None
        self.producer: EventProducer | None = None if self.lazy else producer  # type: ignore[assignment]
        self.topic = topic
        self.batch = batch
        # Longer than a publish can take (producer request timeout), or a slow relay's
        # orders get claimed twice (harmless, only duplicates).
        self.lease = lease
        self.metrics = metrics
        self.relay_id = uuid.uuid4().hex

    @property
    def claims(self) -> Any:
        assert self.repo.client is not None
        return self.repo.client[self.repo.database]["outbox_claims"]

    async def claim(self) -> tuple[str, list[dict[str, Any]]]:
        now = dt.datetime.now(dt.UTC)
        await self.claims.delete_many({"until": {"$lt": now}})  # leases of crashed relays
        # One query for the ids and the events: FerretDB v1 evaluates `_id: {$in}` itself,
        # reading every order, so the claimed documents are not fetched a second time.
        # (Events appended after this read are published by a later pass.)
        # No sort in the query: FerretDB v1 would sort by reading every pending document
        # (thousands after an outage). Without it the first `batch` matches are taken (not
        # checked: whether FerretDB passes the limit on to SQL); the batch is sorted here.
        pending = [
            d
            async for d in self.repo.orders.find(
                {OUTBOX_FLAG: True}, {"pending_events": 1, "outbox_since": 1}
            ).limit(self.batch)
        ]
        pending.sort(key=lambda d: d.get("outbox_since") or now)
        by_id = {d["_id"]: d for d in pending}
        candidates = list(by_id)
        if not candidates:
            return "", []
        token = uuid.uuid4().hex
        docs = [{"_id": i, "owner": token, "until": now + self.lease} for i in candidates]
        try:
            await self.claims.insert_many(docs, ordered=False)
            won = candidates
        except BulkWriteError as exc:
            lost = {docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])}
            won = [i for i in candidates if i not in lost]
        if not won:
            return token, []
        return token, [by_id[i] for i in won]

    async def run_once(self) -> int:
        """One claim-publish-mark pass; returns how many events were acknowledged."""
        if self.producer is None:
            assert self.lazy is not None
            self.producer = await self.lazy.get()  # before claiming: a down Kafka claims nothing
        token, orders = await self.claim()
        if not orders:
            if token:
                await self.claims.delete_many({"owner": token})
            return 0
        try:
            sent: list[tuple[str, str, float, asyncio.Future[Any]]] = []
            for doc in orders:
                for entry in doc.get("pending_events") or ():
                    trace = (
                        TraceContext(entry["traceparent"], entry.get("tracestate", ""))
                        if entry.get("traceparent")
                        else None
                    )
                    fut = await self.producer.send(
                        self.topic,
                        to_record(entry),
                        key=doc["_id"],
                        event_id=entry["id"],
                        trace=trace,
                        record_name=entry["type"],
                    )
                    sent.append((doc["_id"], entry["id"], time.perf_counter(), fut))
            acked: dict[str, set[str]] = {}
            failed = 0
            for order_id, event_id, started, fut in sent:
                try:
                    await fut
                except Exception as exc:
                    failed += 1
                    if failed == 1:
                        log.warning("publish failed", extra={"fields": {"error": repr(exc)}})
                    continue
                if self.metrics:
                    self.metrics.publish_seconds.observe(time.perf_counter() - started)
                acked.setdefault(order_id, set()).add(event_id)
            if self.lazy is not None and sent:
                self.lazy.publishing = failed < len(sent)
            marked = await self._mark_published(acked)
            if self.metrics:
                self.metrics.events_published.inc(marked)
                if failed:
                    self.metrics.publish_failures.inc(failed)
            return marked
        finally:
            await self.claims.delete_many({"owner": token})

    async def _mark_published(self, acked: dict[str, set[str]]) -> int:
        """Drop acknowledged events: per attempt one lock insert and one unlock for the
        batch, the locked orders read by `_id` and updated in small bulks. An order whose
        write lock a request holds is retried a few times over ~0.3 s (a request holds it
        for one write); one still busy after that keeps its events for a later pass
        (republished then; consumers dedupe by id)."""
        marked = 0
        busy = list(acked)
        for attempt in range(MARK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.02 * 2**attempt)
            async with self.repo.locked_many(busy) as mine:
                if mine:
                    marked += await self._drop_events(mine, acked)
            busy = [i for i in busy if i not in mine]
            if not busy:
                break
        return marked

    async def _drop_events(self, mine: set[str], acked: dict[str, set[str]]) -> int:
        """Under the caller's locks on `mine`: remove the acked events from those orders."""
        ops = []
        marked = 0
        # By `_id` one at a time (a few at once), not `$in`: see claim().
        reading = asyncio.Semaphore(2 * MARK_PARALLEL)

        async def read(order_id: str) -> dict[str, Any] | None:
            async with reading:
                return await self.repo.orders.find_one({"_id": order_id}, {"pending_events": 1})

        docs = await asyncio.gather(*(read(i) for i in mine))
        for doc in docs:
            if doc is None:
                continue
            ids = acked[doc["_id"]]
            left = [e for e in doc.get("pending_events") or () if e["id"] not in ids]
            marked += len(doc.get("pending_events") or ()) - len(left)
            if left:
                # Appended while we published: the oldest left says how late we are.
                since = min(e["occurred_at"] for e in left)
                update = {"$set": {"pending_events": left, "outbox_since": since}}
            else:
                update = {
                    "$set": {"pending_events": left},
                    "$unset": {"outbox_since": "", OUTBOX_FLAG: ""},
                }
            ops.append(UpdateOne({"_id": doc["_id"]}, update))
        # FerretDB v1 keeps one backend connection per statement of an update command until
        # the command ends (its handler defers each statement's cursor close): a bulk of 200
        # needed more connections than its pool has and wedged it for good. Small bulks,
        # a few at once: each statement is its own PostgreSQL commit, and concurrent
        # commits share WAL flushes (bench/results/relay_ab.json).
        gate = asyncio.Semaphore(MARK_PARALLEL)

        async def write(chunk: list[UpdateOne]) -> None:
            async with gate:
                await self.repo.orders.bulk_write(chunk, ordered=False)

        chunks = [ops[i : i + MARK_CHUNK] for i in range(0, len(ops), MARK_CHUNK)]
        # All settle before the caller's locks are released; then the first error, if any.
        done = await asyncio.gather(*(write(c) for c in chunks), return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):
                raise result
        return marked

    async def backlog(self) -> tuple[int, float]:
        """(pending events, age in seconds of the oldest) for the gauges."""
        count = 0
        oldest: dict[str, Any] | None = None
        async for d in self.repo.orders.find(
            {OUTBOX_FLAG: True}, {"pending_events": 1, "outbox_since": 1}
        ):
            count += len(d.get("pending_events") or ())
            if d.get("outbox_since") and (
                oldest is None or d["outbox_since"] < oldest["outbox_since"]
            ):
                oldest = d
        age = 0.0
        if oldest is not None:
            age = max(0.0, (dt.datetime.now(dt.UTC) - oldest["outbox_since"]).total_seconds())
        return count, age

    async def refresh_gauges(self) -> None:
        if self.metrics is None:
            return
        try:
            count, age = await self.backlog()
        except Exception:  # FerretDB being down is its health check's news, not the relay's
            log.warning("outbox backlog query failed", exc_info=True)
            return
        self.metrics.outbox_backlog.set(count)
        self.metrics.outbox_oldest_age.set(age)

    async def run(
        self, idle_sleep: float = 0.2, max_backoff: float = 5.0, gauge_every_s: float = 5.0
    ) -> None:
        """Forever: drain while there is work, sleep when idle, back off on errors (Kafka or
        FerretDB down). The gauges refresh every `gauge_every_s` either way (less often while
        reading the backlog is slow)."""
        legacy = asyncio.create_task(self._flag_legacy())  # beside the loop: it scans
        try:
            await self._loop(idle_sleep, max_backoff, gauge_every_s)
        finally:
            legacy.cancel()

    async def _flag_legacy(self) -> None:
        try:
            flagged = await self.repo.flag_legacy_outbox()
        except Exception as exc:  # best effort: only documents from before the flag
            fields = {"error": repr(exc)}
            log.warning("could not flag older pending orders", extra={"fields": fields})
            return
        if flagged:
            log.info("flagged older pending orders", extra={"fields": {"orders": flagged}})

    async def _loop(self, idle_sleep: float, max_backoff: float, gauge_every_s: float) -> None:
        backoff = idle_sleep
        next_gauge = 0.0
        while True:
            if time.monotonic() >= next_gauge:
                started = time.monotonic()
                await self.refresh_gauges()
                # The gauge reads every pending order (FerretDB v1 counts by reading): with
                # a large backlog it waits longer, so it takes at most ~1/10 of the relay.
                took = time.monotonic() - started
                next_gauge = time.monotonic() + max(gauge_every_s, 10 * took)
            try:
                n = await self.run_once()
                backoff = idle_sleep
                if n == 0:
                    await asyncio.sleep(idle_sleep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.lazy is not None:
                    self.lazy.publishing = False
                if self.producer is None:  # still connecting: expected while Kafka is down
                    fields = {"error": repr(exc)}
                    log.warning("kafka producer not started", extra={"fields": fields})
                else:
                    log.exception("relay pass failed")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)


async def _main() -> int:
    """A standalone relay process (scale relays apart from the API)."""
    from services.order.config import OrderConfig
    from services.runtime.kafka import AvroSerde
    from services.runtime.logs import setup_logging

    cfg = OrderConfig.from_env()
    setup_logging("order-relay", cfg.server.log_level)
    repo = MongoOrders(cfg.mongo_url, cfg.mongo_database, max_pool=cfg.mongo_max_pool)
    await repo.open()
    serde = AvroSerde(cfg.kafka.registry_url, auto_register=cfg.kafka.auto_register)
    producer = LazyProducer(lambda: EventProducer(cfg.kafka, serde))
    relay = OutboxRelay(
        repo, producer, batch=cfg.relay_batch, lease=dt.timedelta(seconds=cfg.relay_lease_s)
    )
    try:
        await relay.run(cfg.relay_idle_s)
    finally:
        await producer.close()
        await repo.close()
    return 0


if __name__ == "__main__":
    from services.runtime.server import run

    run(_main)
