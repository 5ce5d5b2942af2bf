"""The faults of test_orders_under_faults: which parts go down and how (kill, stop,
restart), injected one after the other while the workload runs, and every part brought
back afterwards."""

import asyncio
import time

from stack.testing import StackHandle
from tests.reliability.harness import (
    SCALE,
)

FAULTS: list[tuple[str, str, float]] = [
    # (component, how, seconds down)
    ("kafka", "kill", 4.0),
    ("postgres-replica", "stop", 4.0),
    ("notification", "kill", 2.0),
    ("order", "kill", 1.0),  # the outbox relay runs inside the order service
    ("ferretdb", "restart", 1.0),
]


def _bring_back(stack: StackHandle, name: str) -> None:
    """Start a component again unless it is already up (others share this stack)."""
    if stack.pid(name) is None or not stack.healthy(name):
        if stack.pid(name) is not None:
            stack.stop(name)
        stack.start(name)
    stack.wait_healthy(name, timeout=120)


def mongo_answers(url: str, timeout_s: float = 15.0) -> bool:
    """FerretDB answers a read on the orders collection within `timeout_s` (a ping is not
    enough: a wedged FerretDB still answers ping)."""
    import pymongo

    ms = int(timeout_s * 1000)
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=ms, socketTimeoutMS=ms)
    try:
        client["order"]["orders"].find_one({}, {"_id": 1})
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


def restore_all(stack: StackHandle) -> list[str]:
    """Leave every component this test touches healthy, in dependency order; returns what
    needed a rescue beyond a plain restart (reported, never hidden)."""
    rescued = []
    for name in ("ferretdb", "kafka", "postgres-replica", "order", "notification"):
        try:
            _bring_back(stack, name)
        except Exception:
            if name != "order":
                raise
            # A wedged FerretDB keeps the order service from starting: restart both.
            rescued.append("ferretdb restarted to let the order service start")
            stack.restart("ferretdb")
            _bring_back(stack, "order")
    if not mongo_answers(stack.mongo_url()):
        rescued.append("ferretdb wedged after the run: restarted")
        stack.restart("ferretdb")
        stack.restart("order")
    return rescued


def inject(stack: StackHandle, name: str, how: str, down_s: float) -> dict:
    """One fault, always undone (the stack is shared with other engineers)."""
    began = time.monotonic()
    try:
        if how == "kill":
            if stack.pid(name) is not None:
                stack.kill(name)
        else:
            stack.stop(name)
        time.sleep(down_s)
    finally:
        _bring_back(stack, name)
    record = {"component": name, "fault": how, "outage_s": round(time.monotonic() - began, 1)}
    print(f"  restored {name} after {record['outage_s']}s", flush=True)
    if not mongo_answers(stack.mongo_url()):
        # Seen with FerretDB v1.24 when a client sent a bulk of more update statements than
        # its backend pool has connections (stack/README.md): every later command hangs.
        raise AssertionError(f"FerretDB stopped answering reads after: {how} {name}")
    return record


async def run_faults(stack: StackHandle, progress: list[int], done: asyncio.Event) -> list[dict]:
    injected = []
    for k, (name, how, down_s) in enumerate(FAULTS):
        # Spread over the run: fault k once k+1/(F+1) of the orders are placed.
        target = SCALE.orders * (k + 1) // (len(FAULTS) + 1)
        # Polling a plain counter the workload bumps: simpler than an event per threshold.
        while progress[0] < target and not done.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        print(f"fault {k + 1}/{len(FAULTS)}: {how} {name} after {progress[0]} orders", flush=True)
        record = await asyncio.to_thread(inject, stack, name, how, down_s)
        record["after_orders"] = progress[0]
        injected.append(record)
    return injected
