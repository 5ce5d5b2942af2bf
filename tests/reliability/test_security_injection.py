"""Security under hostile clients: SQL-injection and NoSQL-operator strings in string fields
are data, stored verbatim or rejected, never interpreted (a search never widens to unrelated
rows; JSON operator objects are refused by the transcoder)."""

from __future__ import annotations

import uuid

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.order.v1 import order_pb2 as opb
from shop.product.v1 import product_pb2 as ppb
from shop.user.v1 import user_pb2 as upb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    create_product,
    eventually,
    register,
)
from tests.reliability.security_world import (
    INJECTIONS,
    letters,
)

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(600)]


# ---------------------------------------------------------------- injection strings


async def test_injection_strings_are_stored_verbatim_or_rejected_never_interpreted(gw, stubs):
    tag = letters()
    canary = await create_product(stubs, tag, 5)  # named "Reliability <tag>": no shared word
    cases = 0
    for s in INJECTIONS:
        try:
            reply = await stubs.product.SearchProducts(
                ppb.SearchProductsRequest(query=s, page_size=100), timeout=10
            )
        except GRPCError as exc:
            assert exc.status == Status.INVALID_ARGUMENT, (s, exc.status, exc.message)
            continue
        ids = {p.id for p in reply.products}
        assert canary.id not in ids, f"search {s!r} matched an unrelated product"
        r = await gw.get("/api/v1/products:search", params={"query": s, "page_size": 100})
        assert r.status_code in (200, 400), (s, r.status_code, r.text)
        if r.status_code == 200:
            assert canary.id not in {p["id"] for p in r.json().get("products", [])}
        cases += 2

    # Stored verbatim: profile, addresses, a cancel reason.
    user = await register(stubs, "inj", display_name=INJECTIONS[0])
    got = (await stubs.user.GetUser(upb.GetUserRequest(id=user.user_id), metadata=user.bearer)).user
    assert got.display_name == INJECTIONS[0]
    for s in INJECTIONS:
        updated = await stubs.user.UpdateProfile(
            upb.UpdateProfileRequest(id=user.user_id, display_name=s), metadata=user.bearer
        )
        assert updated.user.display_name == s

        async def read_back(s: str = s) -> bool:
            # Reads go to the replica: a read that does not echo the write's x-shop-lsn sees
            # the write once the replica has replayed it, so poll briefly.
            got = await stubs.user.GetUser(
                upb.GetUserRequest(id=user.user_id), metadata=user.bearer
            )
            return got.user.display_name == s

        assert await eventually(read_back, within=5.0, every=0.1), f"{s!r} not stored verbatim"
        cases += 1
    address = opb.PlaceOrderRequest().shipping_address
    address.CopyFrom(ADDRESS)
    address.line1, address.line2, address.city = INJECTIONS[4], INJECTIONS[2], INJECTIONS[6]
    await stubs.user.AddAddress(
        upb.AddAddressRequest(user_id=user.user_id, address=address), metadata=user.bearer
    )

    async def addresses_read_back() -> bool:
        # A replica read without the write's x-shop-lsn: it sees the write once replayed.
        listed = await stubs.user.ListAddresses(
            upb.ListAddressesRequest(user_id=user.user_id), metadata=user.bearer
        )
        return [a.address for a in listed.addresses] == [address]

    assert await eventually(addresses_read_back, within=5.0, every=0.1), "address not verbatim"
    placed = (
        await stubs.order.PlaceOrder(
            opb.PlaceOrderRequest(
                idempotency_key=f"inj-{uuid.uuid4().hex}",
                user_id=user.user_id,
                lines=[opb.LineItem(product_id=canary.id, quantity=1)],
                shipping_address=address,
            ),
            metadata=user.bearer,
        )
    ).order
    assert placed.shipping_address == address
    cancelled = (
        await stubs.order.CancelOrder(
            opb.CancelOrderRequest(id=placed.id, reason=INJECTIONS[5]), metadata=user.bearer
        )
    ).order
    assert cancelled.cancel_reason == INJECTIONS[5]
    cases += 3

    # Operator objects where the schema says string: the transcoder refuses them.
    operator_bodies = [
        ("POST", "/api/v1/auth/login", {"email": {"$gt": ""}, "password": {"$ne": None}}),
        ("POST", "/api/v1/orders", {"user_id": {"$ne": None}, "idempotency_key": "k" * 10}),
        ("PATCH", f"/api/v1/users/{user.user_id}", {"display_name": {"$where": "1"}}),
    ]
    for verb, path, body in operator_bodies:
        r = await gw.request(verb, path, json=body, headers=user.bearer)
        assert r.status_code == 400, (path, r.status_code, r.text)
    for value in ('{"$gt":""}', "$where", "' OR 1=1 --"):
        r = await gw.get("/api/v1/orders", params={"user_id": value}, headers=user.bearer)
        assert r.status_code in (400, 403), (value, r.status_code, r.text)
        r = await gw.get(f"/api/v1/orders/{value}", headers=user.bearer)
        assert r.status_code in (400, 404), (value, r.status_code, r.text)
    cases += len(operator_bodies) + 6
    FIGURES.security["injection strings (stored verbatim / rejected)"] = cases
