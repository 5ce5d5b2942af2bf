"""The outbox relay: publishes the events of order writes to Kafka (shop.orders.v1, key =
order id, Avro via the registry) and then deletes their claims (repository/claims.py: every
write to an order first stores a claim with its events; the claims collection is the outbox).

Never runs in the request path; several relays may run (in the order process or alone:
`python -m services.order.outbox`). Two ways in:

- in process: the repository hands every claim it wrote to the relay of its process
  (`attach=True`) and wakes it. Those claims are known to have landed, so they are sent at
  once: no read, no idle poll. Events of one order go out in version order, keyed by the
  order id (one partition, idempotent producer).
- fallback, every `poll_s`: claims this process does not hold (written by another instance,
  by a process that died, or before it started), at least `grace_s` old. A relay takes their
  orders by inserting `{_id: order_id, owner, until}` into `outbox_claims` (one insert for
  the batch; one relay wins an order, a lease lets a dead relay's orders go), reads the
  orders they belong to (one query per bucket, the tenth of a second the claims were
  written in) and publishes the claims whose write landed (claims.verdict), in version
  order per order; claims of writes that never landed are deleted unpublished.

Sends are not awaited one by one: a batch is sent, then all acknowledgements awaited.
Acknowledged claims are deleted together (one command per bucket they were written in; in
the service, batched over `delete_after_s`). A crash between the ack and the delete
republishes them: at least once, with the event id stored in the claim (the `event_id`
header and field), so consumers dedupe. A batch whose send fails (broker lost mid-flush)
stays and is sent again; acknowledged events of it may be sent twice, never lost.

Kafka being down never stops the order service: `LazyProducer` starts the producer from the
relay loop, retrying with backoff, and reports it as the optional `kafka` health dependency
(NOT_SERVING until connected, and while publishes fail). Orders are still placed; their
claims wait (in memory up to `memory_cap`, always in the store). The backlog gauges are
refreshed on their own timer whether or not Kafka answers, so a stuck outbox shows its age.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from services.order.metrics import OrderMetrics
from services.order.repository import MongoOrders, Verdict, Written, unpack_entry, verdict
from services.runtime.kafka import EventProducer, TraceContext
from shop.topology import ORDERS_TOPIC

log = logging.getLogger(__name__)

TOPIC = ORDERS_TOPIC
BATCH = 500  # claims per send round
MEMORY_CAP = 50_000  # claims held in memory while Kafka is down; the rest wait in the store


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

    async def reset(self) -> None:
        """Drop the producer after failed sends: the next `get()` starts a new one.
        aiokafka's idempotent producer does not recover from a batch that failed (a broker
        restart): every later send fails with OutOfOrderSequenceNumber (measured: 0 of
        5,000 sends in the 30 s after the broker came back). A new producer id starts its
        sequences afresh; what it sends again may be a duplicate, with the same event id."""
        producer, self.producer = self.producer, None
        self.publishing = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)


def _in_version_order(claims: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable by version: each order's claims in the order its writes happened."""
    return sorted(claims, key=lambda c: int(c["version"]) if not c.get("legacy") else -1)


class OutboxRelay:
    def __init__(
        self,
        repo: MongoOrders,
        producer: EventProducer | LazyProducer,
        *,
        topic: str = TOPIC,
        batch: int = BATCH,
        lease: dt.timedelta = dt.timedelta(seconds=30),
        metrics: OrderMetrics | None = None,
        attach: bool = False,
        grace_s: float = 0.0,
        delete_after_s: float = 0.0,
        memory_cap: int = MEMORY_CAP,
    ) -> None:
        self.repo = repo
        self.lazy = producer if isinstance(producer, LazyProducer) else None
        self.producer: EventProducer | None = None if self.lazy else producer  # type: ignore[assignment]
        self.topic = topic
        self.batch = batch
        # Longer than a publish can take (producer request timeout), or a slow relay's
        # orders get taken twice (harmless, only duplicates).
        self.lease = lease
        self.metrics = metrics
        # Another instance's claims are its own relay's for this long (it sends them within
        # milliseconds); the fallback takes them after that.
        self.grace = dt.timedelta(seconds=grace_s)
        self.delete_after_s = delete_after_s
        self.memory_cap = memory_cap
        self.relay_id = uuid.uuid4().hex
        self.queue: dict[str, dict[str, Any]] = {}  # landed claims to send, arrival order
        self.unsure: dict[str, dict[str, Any]] = {}  # outcome unknown: check the order first
        self.done: list[dict[str, Any]] = []  # sent or dropped: to delete
        self.done_since = 0.0
        self.held: set[str] = set()  # claim ids this relay holds (queue, unsure, done)
        self.wake = asyncio.Event()
        self._order_claims: Any = None
        if attach:
            repo.on_written = self.enqueue

    @property
    def order_claims(self) -> Any:
        if self._order_claims is None:
            assert self.repo.client is not None
            self._order_claims = self.repo.client[self.repo.database]["outbox_claims"]
        return self._order_claims

    # ------------------------------------------------------------ in process

    def enqueue(self, written: Written) -> None:
        """The repository wrote a claim (called synchronously after the write)."""
        claim = written.claim
        if written.landed is False:
            self._finish([claim])
        elif len(self.queue) + len(self.unsure) >= self.memory_cap:
            return  # Kafka has been down long: this one waits in the store (fallback)
        elif written.landed:
            self.queue[claim["_id"]] = claim
        else:
            self.unsure[claim["_id"]] = claim
        self.held.add(claim["_id"])
        self.wake.set()

    def _finish(self, claims: Iterable[dict[str, Any]]) -> None:
        for c in claims:
            if not self.done:
                self.done_since = time.monotonic()
            self.done.append(c)
            self.held.add(c["_id"])

    async def _producer(self) -> EventProducer:
        if self.producer is None:
            assert self.lazy is not None
            self.producer = await self.lazy.get()  # raises while Kafka is down
        return self.producer

    async def _send_held(self) -> tuple[int, int]:
        """Send up to `batch` claims this process wrote: (events acknowledged, claims whose
        send failed and wait for the next round)."""
        await self._producer()
        if self.unsure:
            await self._check_unsure()
        if not self.queue:
            return 0, 0
        ids = list(self.queue)[: self.batch]
        claims = [self.queue.pop(i) for i in ids]
        sent, failed = await self._publish(claims)
        if failed:  # back in front, in their order
            self.queue = {**{c["_id"]: c for c in failed}, **self.queue}
        return sent, len(failed)

    async def _check_unsure(self) -> None:
        claims = list(self.unsure.values())
        orders = await self.repo.orders_of(claims)
        now = dt.datetime.now(dt.UTC)
        for c in claims:
            v = verdict(c, orders.get(c["order_id"]), now, self.repo.lock_lease)
            if v is Verdict.WAIT:
                continue
            del self.unsure[c["_id"]]
            if v is Verdict.PUBLISH:
                self.queue[c["_id"]] = c
            else:
                self._finish([c])

    # ------------------------------------------------------------ publishing

    async def _publish(self, claims: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Send every event of `claims` (version order per order) without waiting, then
        await all the acks. Claims whose events were all acknowledged go to `done`;
        returns (their events, the claims to send again)."""
        assert self.producer is not None
        claims = _in_version_order(claims)
        futures: list[tuple[dict[str, Any], float, Any]] = []
        failed: set[str] = set()
        error: BaseException | None = None
        for claim in claims:
            for packed in claim.get("events") or ():
                entry = unpack_entry(packed)
                trace = (
                    TraceContext(entry["traceparent"], entry.get("tracestate", ""))
                    if entry.get("traceparent")
                    else None
                )
                try:
                    # The entry's fields as they are: the serializer checks them against
                    # the schema, and a generated model in between costs 10x (same bytes).
                    fut = await self.producer.send(
                        self.topic,
                        entry["data"],
                        key=claim["order_id"],
                        event_id=entry["id"],
                        trace=trace,
                        record_name=entry["type"],
                    )
                except Exception as exc:  # buffer full, no metadata: the broker is gone
                    failed.add(claim["_id"])
                    error = error or exc
                    break
                futures.append((claim, time.perf_counter(), fut))
        results = await asyncio.gather(*(f for _, _, f in futures), return_exceptions=True)
        for (claim, started, _), result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                failed.add(claim["_id"])
                error = error or result
            elif self.metrics:
                self.metrics.publish_seconds.observe(time.perf_counter() - started)
        ok = [c for c in claims if c["_id"] not in failed]
        again = [c for c in claims if c["_id"] in failed]
        self._finish(ok)
        sent = sum(len(c.get("events") or ()) for c in ok)
        if self.lazy is not None and futures:
            self.lazy.publishing = not again
        if self.metrics:
            self.metrics.events_published.inc(sent)
        if again:
            lost = sum(len(c.get("events") or ()) for c in again)
            if self.metrics:
                self.metrics.publish_failures.inc(lost)
            fields = {"events": lost, "error": repr(error)}
            log.warning("publish failed, sending again", extra={"fields": fields})
            if self.lazy is not None:  # a new producer for the next round (see reset)
                self.producer = None
                await self.lazy.reset()
        return sent, again

    async def delete_done(self) -> int:
        """Delete the claims that were sent or dropped (together: one command per bucket
        they were written in)."""
        if not self.done:
            return 0
        done, self.done = self.done, []
        try:
            deleted = await self.repo.remove_claims(done)
        except BaseException:
            self.done = done + self.done  # tried again later; sent again after a crash
            raise
        self.held.difference_update(c["_id"] for c in done)
        return deleted

    # ------------------------------------------------------------ fallback

    async def _send_stored(self) -> tuple[int, bool]:
        """One fallback round over claims in the store this relay does not hold, whole
        buckets at a time (one indexed query each): (events acknowledged, whether any claim
        was settled: then another round may find more right away)."""
        await self._producer()  # before reading: a down Kafka takes nothing
        now = dt.datetime.now(dt.UTC)

        def fresh(c: dict[str, Any]) -> bool:
            return c["_id"] not in self.held and now - c["at"] >= self.grace

        probe = await self.repo.pending_claims(len(self.held) + self.batch)
        buckets: list[int] = []
        found: list[dict[str, Any]] = []
        for b in sorted({int(c["bucket"]) for c in probe if fresh(c)}):
            buckets.append(b)
            found += [c for c in await self.repo.claims_in([b]) if fresh(c)]
            if len(found) >= self.batch:
                break
        if not found:
            return 0, False
        order_ids = list(dict.fromkeys(c["order_id"] for c in found))[: self.batch]
        token, won = await self._take_orders(order_ids, now)
        try:
            if not won:
                return 0, False
            # Read again now that the orders are ours: a relay that had them before us
            # deleted what it sent (it keeps them until then), so nothing goes out twice.
            taken = set(won)
            by_order: dict[str, list[dict[str, Any]]] = {}
            for c in await self.repo.claims_in(buckets):
                if c["order_id"] in taken and fresh(c):
                    by_order.setdefault(c["order_id"], []).append(c)
            orders = await self.repo.orders_of(c for cs in by_order.values() for c in cs)
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

    # ------------------------------------------------------------ passes

    async def run_once(self) -> int:
        """Send what this process holds, then one fallback round, and delete what was sent;
        returns how many events were acknowledged."""
        await self._producer()  # before reading: a down Kafka takes nothing
        sent = 0
        while self.queue or self.unsure:
            n, failed = await self._send_held()
            sent += n
            if failed or (not n and not self.queue):
                break
        await self.delete_done()  # first: the fallback then skips no held claims
        if not self.queue:
            sent += (await self._send_stored())[0]
        return sent

    async def backlog(self) -> tuple[int, float]:
        """(events not yet published, age in seconds of the oldest) for the gauges."""
        count = 0
        oldest: dt.datetime | None = None
        async for c in self.repo.claims.find({}, {"events": 1, "since": 1}):
            if c.get("events"):
                count += len(c["events"])
                if oldest is None or c["since"] < oldest:
                    oldest = c["since"]
        age = 0.0
        if oldest is not None:
            age = max(0.0, (dt.datetime.now(dt.UTC) - oldest).total_seconds())
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
        self, poll_s: float = 1.0, max_backoff: float = 5.0, gauge_every_s: float = 5.0
    ) -> None:
        """Forever: send what this process writes as it is written, look for other claims
        every `poll_s`, back off on errors (Kafka or FerretDB down). The gauges refresh
        every `gauge_every_s` either way (less often while reading the backlog is slow)."""
        legacy = asyncio.create_task(self._migrate_legacy())  # beside the loop: it scans
        try:
            await self._loop(poll_s, max_backoff, gauge_every_s)
        finally:
            legacy.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.delete_done(), 5)

    async def _migrate_legacy(self) -> None:
        try:
            await self.repo.flag_legacy_outbox()
            moved = 1
            while moved:
                moved = await self.repo.migrate_legacy()
                if moved:
                    fields = {"orders": moved}
                    log.info("moved older pending events to claims", extra={"fields": fields})
        except Exception as exc:  # best effort: only documents from before version claims
            fields = {"error": repr(exc)}
            log.warning("could not move older pending orders", extra={"fields": fields})

    async def _loop(self, poll_s: float, max_backoff: float, gauge_every_s: float) -> None:
        backoff = min(poll_s, 0.2)
        next_gauge = next_poll = 0.0
        while True:
            now = time.monotonic()
            if now >= next_gauge:
                await self.refresh_gauges()
                # The gauge reads every pending claim: with a large backlog it waits longer,
                # so it takes at most ~1/10 of the relay.
                took = time.monotonic() - now
                next_gauge = time.monotonic() + max(gauge_every_s, 10 * took)
            try:
                await self._producer()
                failed = 0
                if self.queue or self.unsure:
                    _, failed = await self._send_held()
                if not self.queue and time.monotonic() >= next_poll:
                    # Others' claims once this process's own are out (while Kafka is down
                    # the queue holds the backlog: reading the store again would not help).
                    _, more = await self._send_stored()
                    # A backlog in the store: go on at once; else look again in poll_s.
                    next_poll = time.monotonic() + (0 if more else poll_s)
                if self.done and (
                    len(self.done) >= self.batch
                    or time.monotonic() - self.done_since >= self.delete_after_s
                ):
                    await self.delete_done()
                if not failed:
                    backoff = min(poll_s, 0.2)
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
                continue
            if failed:
                # The broker is gone: wait before sending again.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            if self.queue:
                continue  # more written meanwhile: send it now
            deadlines = [next_poll, next_gauge]
            if self.done:
                deadlines.append(self.done_since + self.delete_after_s)
            if self.unsure:
                deadlines.append(time.monotonic() + 0.5)
            wait = max(0.0, min(deadlines) - time.monotonic())
            self.wake.clear()
            if not self.queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)


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
        repo,
        producer,
        batch=cfg.relay_batch,
        lease=dt.timedelta(seconds=cfg.relay_lease_s),
        grace_s=cfg.relay_grace_s,
        delete_after_s=cfg.relay_delete_after_s,
    )
    try:
        await relay.run(cfg.relay_poll_s)
    finally:
        await producer.close()
        await repo.close()
    return 0


if __name__ == "__main__":
    from services.runtime.server import run

    run(_main)
