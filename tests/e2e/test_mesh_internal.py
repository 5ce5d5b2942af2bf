"""Service-to-service calls in the local stack go through Envoy's internal listener (8082),
so they get the mesh's per-method timeouts, retries, breakers and outlier detection. Proved
from Envoy's JSON access log: one order's calls from order to product and user, and the
notification service's lookup for its email, are logged by the internal listener under the
order's trace id; a login's credential check (auth -> user) is too."""

from __future__ import annotations

import json
import secrets

import pytest

from shop.auth.v1 import auth_pb2
from shop.order.v1 import order_pb2 as opb
from stack.model import state_dir
from tests.reliability.harness import Stubs, eventually, new_traceparent, place_traced_order

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


def _count(trace_id: str, path: str) -> int:
    return sum(1 for e in _internal_calls(trace_id) if e["path"] == path)


def _internal_calls(trace_id: str) -> list[dict]:
    """Envoy access-log entries of the internal listener carrying `trace_id`."""
    found = []
    path = state_dir() / "logs" / "envoy.log"
    for line in path.read_text(errors="replace").splitlines():
        if trace_id not in line or not line.startswith("{"):
            continue
        entry = json.loads(line)  # every access-log line is one JSON object
        if entry["listener"] == "internal" and trace_id in (entry.get("traceparent") or ""):
            found.append(entry)
    return found


async def test_order_and_notification_call_product_and_user_through_envoy(stack) -> None:
    stack.require("order", "notification", "auth", "smtp-sink", "envoy")
    admin, stubs = Stubs(platform=True), Stubs()
    try:
        order, buyer, trace_id = await place_traced_order(admin, stubs, "s2s")
        assert order.status == opb.ORDER_STATUS_CONFIRMED

        # The buyer places their own order: their verified token proves the user exists, so
        # order asks the user service nothing; it reserves stock at product.
        want = {"order -> product ReserveStock": "/shop.product.v1.ProductService/ReserveStock"}
        # Notification asks for a poll's recipients in one BatchGetUsers (GetUser against a
        # user service without it); the batch carries the trace of the record that asked.
        user_lookups = (
            "/shop.user.v1.UserService/BatchGetUsers",
            "/shop.user.v1.UserService/GetUser",
        )

        async def routed() -> list[str]:
            paths = {(e["path"], e["upstream"]) for e in _internal_calls(trace_id)}
            return [w for w, p in want.items() if not any(path == p for path, _ in paths)]

        async def all_routed() -> bool:
            return not await routed()

        assert await eventually(all_routed, within=30.0, every=1.0), (
            f"not seen on Envoy's internal listener: {await routed()}"
        )
        for entry in _internal_calls(trace_id):
            assert entry["status"] == 200 and entry["grpc_status"] == 0, entry
            assert entry["upstream"].startswith("127.0.0.1:5005"), entry

        # The confirmation email looks the buyer up (notification -> user) in the same trace.
        async def notified() -> bool:
            return sum(_count(trace_id, path) for path in user_lookups) >= 1

        assert await eventually(notified, within=60.0, every=1.0), (
            "the notification service's user lookup did not go through Envoy"
        )

        # auth -> user: a login's credential check, under the login's trace id.
        login_trace = secrets.token_hex(16)
        await stubs.auth.Login(
            auth_pb2.LoginRequest(email=buyer.email, password=buyer.password),
            metadata={"traceparent": new_traceparent(login_trace)},
            timeout=10,
        )

        async def checked() -> bool:
            return any("UserService/" in e["path"] for e in _internal_calls(login_trace))

        assert await eventually(checked, within=30.0, every=1.0), (
            "auth's credential check did not go through Envoy"
        )
    finally:
        admin.close()
        stubs.close()
