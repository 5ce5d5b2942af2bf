"""Authentication and access end to end: NGINX -> Envoy (jwt_authn, RBAC) -> services (the
runtime's own token check), with the real auth, user, product and order services.

Protected methods are enumerated from the schema (gen/descriptor), so a new user/admin
method is covered without touching this file. Tokens with a bad expiry or audience are
minted with the auth service's real current key (unsealed with the dev key-encryption key),
so each test fails for exactly the reason it names.

Shared fixtures and helpers: tests/e2e/auth_accounts.py; tokens at the edge, ownership and
sessions have their own modules (test_auth_edge_tokens.py, test_auth_ownership.py,
test_auth_sessions.py); this one holds the direct calls (no Envoy) and read-your-writes.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.runtime.auth import (
    PAYLOAD_HEADER,
    b64url,
)
from shop.order.v1 import order_grpc
from shop.order.v1 import order_pb2 as opb
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as ppb
from shop.topology import SERVICES
from stack.callers import service_bearer
from tests.e2e.auth_accounts import bearer, register_and_login

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


async def test_direct_calls_without_a_token_are_refused(alice: dict) -> None:
    order_ch = Channel("127.0.0.1", SERVICES["order"].port)
    product_ch = Channel("127.0.0.1", SERVICES["product"].port)
    try:
        orders = order_grpc.OrderServiceStub(order_ch)
        with pytest.raises(GRPCError) as exc:
            await orders.ListOrders(opb.ListOrdersRequest(user_id=alice["user_id"]))
        assert exc.value.status is Status.UNAUTHENTICATED
        products = product_grpc.ProductServiceStub(product_ch)
        req = ppb.ReserveStockRequest(order_id="o-x")
        with pytest.raises(GRPCError) as exc:
            await products.ReserveStock(req)
        assert exc.value.status is Status.UNAUTHENTICATED
        with pytest.raises(GRPCError) as exc:  # a user's token is not a service identity
            await products.ReserveStock(req, metadata=bearer(alice["access_token"]))
        assert exc.value.status is Status.PERMISSION_DENIED
        with pytest.raises(GRPCError) as exc:  # forged claims header, no token
            await orders.ListOrders(
                opb.ListOrdersRequest(user_id=alice["user_id"]),
                metadata={PAYLOAD_HEADER: b64url(b'{"sub":"x","roles":["admin"]}')},
            )
        assert exc.value.status is Status.UNAUTHENTICATED
        # A service identity opens only what the schema grants it: ListOrders names no
        # service (notification may read one order, GetOrder, not list a user's).
        for name in ("notification", "order"):
            with pytest.raises(GRPCError) as exc:
                await orders.ListOrders(
                    opb.ListOrdersRequest(user_id=alice["user_id"]), metadata=service_bearer(name)
                )
            assert exc.value.status is Status.PERMISSION_DENIED, name
        # The owner's own token passes the same check.
        reply = await orders.ListOrders(
            opb.ListOrdersRequest(user_id=alice["user_id"]), metadata=bearer(alice["access_token"])
        )
        assert reply is not None
    finally:
        order_ch.close()
        product_ch.close()


def test_read_your_writes_through_the_gateway_with_the_lsn_echo(gw: httpx.Client) -> None:
    """What the storefront does (frontend/src/api/transport.ts): a write over gRPC-Web comes
    back with its commit LSN in the x-shop-lsn trailer, and echoing it on the next read makes
    that read see the write, though reads go to the replica. Each update is read back at
    once, no polling, 15 times."""
    from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
    from services.runtime.context import LSN_HEADER, parse_lsn
    from shop.user.v1 import user_pb2 as upb

    who = register_and_login(gw)
    svc = "/api/shop.user.v1.UserService"

    def call(method: str, req, reply_cls, lsn: str = ""):  # type: ignore[no-untyped-def]
        headers = {**GRPC_WEB_HEADERS, **bearer(who["access_token"])}
        if lsn:
            headers[LSN_HEADER] = lsn
        r = gw.post(f"{svc}/{method}", content=grpc_web_request(req.SerializeToString()),
                    headers=headers)  # fmt: skip
        assert r.status_code == 200, r.text
        messages, trailers = grpc_web_parse(r.content, dict(r.headers))
        assert trailers.get("grpc-status") == "0", trailers
        return reply_cls.FromString(messages[0]), trailers

    lsns = []
    for i in range(15):
        name = f"Echo {i} {uuid.uuid4().hex[:6]}"
        _, trailers = call(
            "UpdateProfile",
            upb.UpdateProfileRequest(id=who["user_id"], display_name=name),
            upb.UpdateProfileResponse,
        )
        lsn = trailers.get(LSN_HEADER, "")
        assert lsn, f"no {LSN_HEADER} trailer reached the client: {trailers}"
        lsns.append(parse_lsn(lsn))
        got, _ = call(
            "GetUser", upb.GetUserRequest(id=who["user_id"]), upb.GetUserResponse, lsn=lsn
        )
        assert got.user.display_name == name, f"read {i} did not see its own write"
    assert lsns == sorted(lsns), "commit LSNs go forward"
