"""What the books say after test_orders_under_faults: the orders in FerretDB, their unsent
email claims, the OrderPlaced events on shop.orders.v1 and the confirmation emails in the
SMTP sink."""

import email
import email.policy
import re
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from motor.motor_asyncio import AsyncIOMotorClient

from services.order.repository.claims import CLAIMS
from stack.model import state_dir

TOPIC = "shop.orders.v1"
SUBJECT = re.compile(r"^Order (\S+) confirmed")


async def store_orders(mongo_url: str, user_ids: list[str], run: str) -> list[dict]:
    client = AsyncIOMotorClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        docs = []
        for uid in user_ids:  # equalities: FerretDB v1 would scan every order for an $in
            cursor = client["order"]["orders"].find({"user_id": uid}, {"body": 0})
            docs += [d async for d in cursor if str(d.get("idempotency_key", "")).startswith(run)]
        return docs
    finally:
        client.close()


async def unsent_claims(mongo_url: str, order_ids: set[str]) -> set[str]:
    """Ids of `order_ids` that still have a claim with events in the outbox (services/order/
    repository/claims.py): an event not yet published, or published and not yet marked.
    The outbox is read whole: drained, it holds only other tests' in-flight claims."""
    client = AsyncIOMotorClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        cursor = client["order"][CLAIMS].find({}, {"order_id": 1, "events": 1})
        return {d["order_id"] async for d in cursor if d.get("events")} & order_ids
    finally:
        client.close()


async def order_placed_events(bootstrap: str, order_ids: set[str], within: float) -> dict:
    """order id -> Counter(event id -> copies) of OrderPlaced, from the start of the topic."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"reliability-{uuid.uuid4().hex[:8]}",  # fresh group: from the beginning
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    seen: dict[str, Counter] = defaultdict(Counter)
    deadline = time.monotonic() + within
    await consumer.start()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for r in records:
                    key = r.key.decode() if r.key else ""
                    if key not in order_ids:
                        continue
                    headers = dict(r.headers or ())
                    if headers.get("event_type", b"").decode().endswith("OrderPlaced"):
                        seen[key][headers.get("event_id", b"?").decode()] += 1
            if not batches and set(seen) >= order_ids:
                break
    finally:
        await consumer.stop()
    return seen


def confirmation_emails(since_ns: int, order_ids: set[str]) -> dict[str, Counter]:
    """order id -> Counter(Message-ID -> copies), from the sink's files newer than the run."""
    found: dict[str, Counter] = defaultdict(Counter)
    for path in sorted(Path(state_dir(), "mail").glob("*.eml")):
        if int(path.name.split("-", 1)[0]) < since_ns:
            continue
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        m = SUBJECT.match(str(msg.get("Subject", "")))
        if m and m.group(1) in order_ids:
            found[m.group(1)][str(msg.get("Message-ID", ""))] += 1
    return found
