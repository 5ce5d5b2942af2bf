"""Security under hostile clients, directly (grpclib) and through the gateway (NGINX ->
Envoy, REST and gRPC-Web):

- every protected method, enumerated from the schema's policy option, refuses a call
  without a token; admin methods refuse a user token; internal methods refuse a user token
  and are not routed at the edge;
- user A's token on user B's orders, profile, addresses and notifications is refused, and
  B's data is unchanged afterwards;
- (test_security_injection.py) SQL-injection and NoSQL-operator strings in string fields
  are data: stored verbatim or rejected, never interpreted;
- (test_security_spoofing.py) identity headers sent by a client grant nothing, and the
  per-IP rate limit and the per-account login throttle still hold.
"""

from __future__ import annotations

import uuid

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.notification.v1 import notification_pb2 as npb
from shop.order.v1 import order_pb2 as opb
from shop.user.v1 import user_pb2 as upb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    create_product,
    register,
)
from tests.reliability.security_world import (
    PROTECTED,
    call_direct,
    call_grpc_web,
    rest_path,
)
from tests.reliability.test_fuzz import message_class

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(600)]


# ---------------------------------------------------------------- missing / wrong tokens


async def test_every_protected_method_refuses_a_call_without_token(gw, stubs):
    user = await register(stubs, "sec")
    checked = 0
    for m in PROTECTED:
        empty = message_class(m.input_type)()
        assert await call_direct(m, empty) == Status.UNAUTHENTICATED, m.grpc_path
        if m.access == "internal":
            # A user token is not a service identity; and the edge does not route it at all.
            assert await call_direct(m, empty, user.bearer) == Status.PERMISSION_DENIED, m.name
            assert await call_grpc_web(gw, m, empty, user.bearer) in (
                "HTTP_404",
                "UNIMPLEMENTED",
                "PERMISSION_DENIED",
            ), m.name
            checked += 3
            continue
        assert await call_grpc_web(gw, m, empty) in ("HTTP_401", "UNAUTHENTICATED"), m.name
        for rule in m.http:
            r = await gw.request(rule.verb.upper(), rest_path(rule), json={} if rule.body else None)
            assert r.status_code == 401, (m.name, rule.path, r.status_code, r.text)
            checked += 1
        if m.access == "admin":
            assert await call_direct(m, empty, user.bearer) == Status.PERMISSION_DENIED, m.name
            web = await call_grpc_web(gw, m, empty, user.bearer)
            assert web in ("HTTP_403", "PERMISSION_DENIED"), (m.name, web)
            checked += 2
        checked += 2
    FIGURES.security["protected methods refused without token / with a weaker one"] = checked
    assert {m.access for m in PROTECTED} >= {"user", "admin", "internal"}


async def test_user_a_cannot_read_or_change_user_b(gw, stubs):
    a, b = await register(stubs, "sec-a"), await register(stubs, "sec-b")
    product = await create_product(stubs, "sec", 100)
    order = (
        await stubs.order.PlaceOrder(
            opb.PlaceOrderRequest(
                idempotency_key=f"sec-{uuid.uuid4().hex}",
                user_id=b.user_id,
                lines=[opb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=ADDRESS,
            ),
            metadata=b.bearer,
            timeout=15,
        )
    ).order
    address = (
        await stubs.user.AddAddress(
            upb.AddAddressRequest(user_id=b.user_id, address=ADDRESS), metadata=b.bearer
        )
    ).address
    denied = (Status.NOT_FOUND, Status.PERMISSION_DENIED)
    attempts = [
        (stubs.order.GetOrder, opb.GetOrderRequest(id=order.id)),
        (stubs.order.CancelOrder, opb.CancelOrderRequest(id=order.id, reason="not mine")),
        (stubs.order.ListOrders, opb.ListOrdersRequest(user_id=b.user_id)),
        (
            stubs.order.PlaceOrder,
            opb.PlaceOrderRequest(
                idempotency_key=f"sec-{uuid.uuid4().hex}",
                user_id=b.user_id,
                lines=[opb.LineItem(product_id=product.id, quantity=1)],
                shipping_address=ADDRESS,
            ),
        ),
        (stubs.user.GetUser, upb.GetUserRequest(id=b.user_id)),
        (stubs.user.UpdateProfile, upb.UpdateProfileRequest(id=b.user_id, display_name="Mallory")),
        (stubs.user.AddAddress, upb.AddAddressRequest(user_id=b.user_id, address=ADDRESS)),
        (stubs.user.ListAddresses, upb.ListAddressesRequest(user_id=b.user_id)),
        (
            stubs.user.RemoveAddress,
            upb.RemoveAddressRequest(user_id=b.user_id, address_id=address.id),
        ),
        (stubs.notification.ListNotifications, npb.ListNotificationsRequest(user_id=b.user_id)),
    ]
    for call, request in attempts:
        with pytest.raises(GRPCError) as err:
            await call(request, metadata=a.bearer, timeout=10)
        assert err.value.status in denied, (type(request).__name__, err.value.status)
    # The same through the gateway (REST).
    rest = [
        ("GET", f"/api/v1/orders/{order.id}", None),
        ("POST", f"/api/v1/orders/{order.id}:cancel", {"reason": "not mine"}),
        ("GET", f"/api/v1/orders?user_id={b.user_id}", None),
        ("GET", f"/api/v1/users/{b.user_id}", None),
        ("PATCH", f"/api/v1/users/{b.user_id}", {"display_name": "Mallory"}),
        ("GET", f"/api/v1/users/{b.user_id}/addresses", None),
        ("DELETE", f"/api/v1/users/{b.user_id}/addresses/{address.id}", None),
        ("GET", f"/api/v1/notifications?user_id={b.user_id}", None),
    ]
    for verb, path, body in rest:
        r = await gw.request(verb, path, json=body, headers=a.bearer)
        assert r.status_code in (403, 404), (verb, path, r.status_code, r.text)
    # B's data is untouched.
    got = (await stubs.order.GetOrder(opb.GetOrderRequest(id=order.id), metadata=b.bearer)).order
    assert got.status == opb.ORDER_STATUS_CONFIRMED
    me = (await stubs.user.GetUser(upb.GetUserRequest(id=b.user_id), metadata=b.bearer)).user
    assert me.display_name == "Rel Tester"
    mine = await stubs.user.ListAddresses(
        upb.ListAddressesRequest(user_id=b.user_id), metadata=b.bearer
    )
    assert [x.id for x in mine.addresses] == [address.id]
    FIGURES.security["cross-user access refused (direct + REST)"] = len(attempts) + len(rest)
