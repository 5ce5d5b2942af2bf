"""Orders are never lost, never duplicated, never oversold, and every order gets exactly one
confirmation email, while Kafka, the PostgreSQL replica, the notification service, the order
service (which runs the outbox relay) and FerretDB are crashed or restarted mid-run.

Buyers are real users with their own access tokens calling the order service over gRPC at a
bounded rate. Like a real client they resend PlaceOrder with the same idempotency key when
the call fails in a way that may have left it half done (UNAVAILABLE, DEADLINE_EXCEEDED,
ABORTED, a dropped connection) and give up after a bounded time.

Afterwards, within a bounded wait:
- every key has at most one order in FerretDB, and every order a client was told about is
  there, CONFIRMED, readable with GetOrder (lost / duplicated);
- shop.orders.v1, read from the beginning with a fresh consumer group, holds exactly one
  distinct OrderPlaced event id per confirmed order (redelivered copies of one event id are
  at-least-once and allowed);
- the SMTP sink holds one confirmation email per order: exactly one distinct Message-ID per
  order. The notification service resends an email whose send was cut by kill -9 with the
  same deterministic Message-ID (services/notification/domain.decide_claim); those copies
  are counted and bounded by the emails in flight at the kill;
- each product's stock is its initial stock minus the quantities of the confirmed orders.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from services.notification.config import NotificationConfig
from shop.order.v1 import order_pb2 as opb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    SCALE,
    Account,
    Stubs,
    create_product,
    eventually,
    register_many,
    stock_of,
)
from tests.reliability.order_books import (
    confirmation_emails,
    order_placed_events,
    store_orders,
    unsent_claims,
)
from tests.reliability.order_faults import FAULTS, restore_all, run_faults

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(SCALE.timeout_s)]

RETRY = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.ABORTED}
CONTRACT = {  # statuses PlaceOrder may answer (order.proto, runtime/errors.py)
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.UNAUTHENTICATED,
    Status.PERMISSION_DENIED,
    Status.FAILED_PRECONDITION,
    Status.ALREADY_EXISTS,
    Status.RESOURCE_EXHAUSTED,
    *RETRY,
}
GIVE_UP_S = 240.0  # a client stops retrying one checkout after this long
PRODUCTS = 6
INITIAL_STOCK = 1_000_000


@dataclass
class Outcome:
    key: str
    account: Account
    lines: list[tuple[str, int]]
    order_id: str = ""
    status: str = ""  # final: CONFIRMED, or the gRPC status name it ended with
    attempts: int = 0
    retried: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)  # INTERNAL/UNKNOWN... seen


# ---------------------------------------------------------------- the workload


async def place(stubs: Stubs, o: Outcome) -> None:
    request = opb.PlaceOrderRequest(
        idempotency_key=o.key,
        user_id=o.account.user_id,
        lines=[opb.LineItem(product_id=p, quantity=q) for p, q in o.lines],
        shipping_address=ADDRESS,
    )
    deadline = time.monotonic() + GIVE_UP_S
    delay = 0.2
    while True:
        o.attempts += 1
        try:
            md = await o.account.metadata(stubs.auth)
            reply = await stubs.order.PlaceOrder(request, metadata=md, timeout=10)
            o.order_id = reply.order.id
            o.status = opb.OrderStatus.Name(reply.order.status).removeprefix("ORDER_STATUS_")
            return
        except GRPCError as exc:
            if exc.status not in CONTRACT:
                # Never acceptable, but the checkout may still have happened: keep retrying
                # with the same key (PlaceOrder is idempotent) so the books can be checked.
                o.violations.append(f"{exc.status.name}: {exc.message}")
            elif exc.status not in RETRY:
                o.status = exc.status.name
                return
            o.retried[exc.status.name] += 1
        except (TimeoutError, OSError, StreamTerminatedError, ProtocolError) as exc:
            o.retried[type(exc).__name__] += 1
        if time.monotonic() > deadline:
            o.status = "GAVE_UP"
            return
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 3.0)


async def run_workload(stubs: Stubs, outcomes: list[Outcome], progress: list[int]) -> None:
    sem = asyncio.Semaphore(SCALE.concurrency)
    start = time.monotonic()

    async def one(i: int, o: Outcome) -> None:
        # Bounded rate: order i is not sent before start + i / rate.
        await asyncio.sleep(max(0.0, start + i / SCALE.rate_per_s - time.monotonic()))
        async with sem:
            await place(stubs, o)
        progress[0] += 1

    await asyncio.gather(*(one(i, o) for i, o in enumerate(outcomes)))


# ---------------------------------------------------------------- the test


async def test_no_order_lost_or_duplicated_no_double_email_no_oversell_under_faults(stack):
    stack.require("order", "notification", "auth", "smtp-sink")
    run = f"rel-{uuid.uuid4().hex[:8]}"
    since_ns = time.time_ns()
    stubs = Stubs()
    stack_ok = True
    try:
        buyers = await register_many(stubs, run, SCALE.buyers)
        products = [await create_product(stubs, run, INITIAL_STOCK) for _ in range(PRODUCTS)]
        rng = random.Random(run)
        outcomes = [
            Outcome(
                key=f"{run}-{i:06d}",
                account=buyers[i % len(buyers)],
                lines=[(p.id, rng.randint(1, 3)) for p in rng.sample(products, rng.randint(1, 2))],
            )
            for i in range(SCALE.orders)
        ]
        progress = [0]
        done = asyncio.Event()
        began = time.monotonic()
        faults_task = asyncio.create_task(run_faults(stack, progress, done))
        work = asyncio.create_task(run_workload(stubs, outcomes, progress))
        try:
            await asyncio.wait({work, faults_task}, return_when=asyncio.FIRST_EXCEPTION)
            if faults_task.done() and faults_task.exception() is not None:
                work.cancel()  # a fault could not be undone: stop, the finally restores
            await work
        finally:
            done.set()
            faults = await faults_task  # every fault restores its component (finally)
        placed_s = time.monotonic() - began

        # ---- convergence: no PENDING order left, outbox drained, events and emails out
        user_ids = [b.user_id for b in buyers]

        async def settled() -> list[dict] | None:
            docs = await store_orders(stack.mongo_url(), user_ids, run)
            if any(d["status"] == "PENDING" for d in docs):
                return None
            unsent = await unsent_claims(stack.mongo_url(), {d["_id"] for d in docs})
            return None if unsent else docs

        docs = await eventually(settled, within=SCALE.converge_s, every=2.0)
        if not docs:
            docs = await store_orders(stack.mongo_url(), user_ids, run)
        by_key: dict[str, list[dict]] = defaultdict(list)
        for d in docs:
            if d["status"] != "FAILED":  # FAILED = compensated tombstone, not an order
                by_key[d["idempotency_key"]].append(d)
        confirmed = {
            ds[0]["_id"]: ds[0] for ds in by_key.values() if ds[0]["status"] == "CONFIRMED"
        }
        accepted = [o for o in outcomes if o.status == "CONFIRMED"]

        lost = [o.key for o in accepted if o.order_id not in confirmed]
        duplicated = {k: len(ds) for k, ds in by_key.items() if len(ds) > 1}
        unsent = await unsent_claims(stack.mongo_url(), {d["_id"] for d in docs})
        pending = [d["_id"] for d in docs if d["status"] == "PENDING" or d["_id"] in unsent]
        unknown_to_client = [i for i in confirmed if i not in {o.order_id for o in accepted}]

        # GetOrder as the buyer: the API agrees with the store.
        missing_via_api = []
        sample = accepted if len(accepted) <= 2000 else random.sample(accepted, 2000)
        for o in sample:
            try:
                got = await stubs.order.GetOrder(
                    opb.GetOrderRequest(id=o.order_id),
                    metadata=await o.account.metadata(stubs.auth),
                    timeout=10,
                )
                if got.order.status != opb.ORDER_STATUS_CONFIRMED:
                    missing_via_api.append((o.order_id, got.order.status))
            except GRPCError as exc:
                missing_via_api.append((o.order_id, exc.status.name))

        # ---- Kafka: one distinct OrderPlaced per confirmed order
        events = await order_placed_events(
            stack.kafka_bootstrap, set(confirmed), within=max(60.0, SCALE.converge_s / 3)
        )
        no_event = [i for i in confirmed if not events.get(i)]
        many_events = {i: len(c) for i, c in events.items() if len(c) > 1}
        wire_copies = sum(sum(c.values()) - len(c) for c in events.values())

        # ---- email: one Message-ID per order, copies only from a killed in-flight send
        async def all_mailed() -> dict | None:
            got = await asyncio.to_thread(confirmation_emails, since_ns, set(confirmed))
            return got if set(got) >= set(confirmed) else None

        mails = await eventually(all_mailed, within=SCALE.converge_s, every=3.0) or (
            await asyncio.to_thread(confirmation_emails, since_ns, set(confirmed))
        )
        no_email = [i for i in confirmed if not mails.get(i)]
        two_emails = {i: dict(c) for i, c in mails.items() if len(c) > 1}
        resent_copies = sum(sum(c.values()) - 1 for c in mails.values() if len(c) == 1)

        # ---- stock: initial minus confirmed quantities (reads may hit the replica: poll)
        want = {p.id: INITIAL_STOCK for p in products}
        for d in confirmed.values():
            for item in d["items"]:
                want[item["product_id"]] -= int(item["quantity"])

        async def stock_matches() -> dict | None:
            have = {pid: await stock_of(stubs, pid) for pid in want}
            return have if have == want else None

        have = await eventually(stock_matches, within=60, every=1.0) or {
            pid: await stock_of(stubs, pid) for pid in want
        }
        oversold = sum(max(0, want[p] - have[p]) for p in want)  # taken beyond confirmed
        leaked = sum(max(0, have[p] - want[p]) for p in want)  # released/never reserved

        violations = [v for o in outcomes for v in o.violations]
        notification_kills = sum(1 for f in faults if f["component"] == "notification")
        in_flight = NotificationConfig.from_env().max_in_flight
        statuses = Counter(o.status for o in outcomes)
        retried = sum((o.retried for o in outcomes), Counter())
        FIGURES.orders = {
            "orders_attempted": len(outcomes),
            "orders_confirmed": len(accepted),
            "orders_confirmed_in_store": len(confirmed),
            "outcomes": dict(statuses),
            "retries": dict(retried),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "oversold_units": oversold,
            "stock_leaked_units": leaked,
            "missing_order_placed": len(no_event),
            "extra_order_placed_event_ids": len(many_events),
            "order_placed_wire_redeliveries": wire_copies,
            "missing_emails": len(no_email),
            "orders_with_two_message_ids": len(two_emails),
            "email_resent_same_message_id": resent_copies,
            "contract_violations": len(violations),
            "placement_seconds": round(placed_s, 1),
            "rate_per_s": SCALE.rate_per_s,
        }
        FIGURES.faults = faults
        print(FIGURES.orders, faults)

        assert len(faults) == len(FAULTS), f"not every fault was injected: {faults}"
        assert not violations, f"{len(violations)} answers outside the contract: {violations[:5]}"
        assert statuses["CONFIRMED"] == len(outcomes), f"not every checkout succeeded: {statuses}"
        assert not lost, f"{len(lost)} confirmed orders lost: {lost[:5]}"
        assert not duplicated, f"keys with several orders: {list(duplicated.items())[:5]}"
        assert not pending, f"{len(pending)} orders still PENDING or unpublished: {pending[:5]}"
        assert not unknown_to_client, f"orders nobody was told about: {unknown_to_client[:5]}"
        assert not missing_via_api, f"GetOrder disagrees with the store: {missing_via_api[:5]}"
        assert not no_event, f"{len(no_event)} orders without OrderPlaced: {no_event[:5]}"
        assert not many_events, f"orders with several OrderPlaced ids: {list(many_events)[:5]}"
        assert not no_email, f"{len(no_email)} orders without email: {no_email[:5]}"
        assert not two_emails, f"orders emailed twice (distinct Message-IDs): {two_emails}"
        assert resent_copies <= notification_kills * in_flight, (
            f"{resent_copies} resent copies, more than in flight at {notification_kills} kills"
        )
        assert have == want, f"stock != initial - confirmed: oversold {oversold}, leaked {leaked}"
    except BaseException:
        stack_ok = False
        raise
    finally:
        stubs.close()
        # Whatever happened above, leave every component we touched running.
        try:
            rescued = await asyncio.to_thread(restore_all, stack)
        except Exception as exc:
            if stack_ok:
                raise AssertionError(f"could not restore the stack: {exc}") from exc
            rescued = [f"restore failed: {exc}"]
        FIGURES.orders["stack_rescues"] = rescued
        if stack_ok:
            assert not rescued, f"the stack needed a rescue after the run: {rescued}"
