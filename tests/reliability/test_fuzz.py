"""Bad input never crashes anything: hypothesis requests built from the proto descriptors
(gen/descriptor/shop.binpb, every field of every request message, nested, with injection
strings, edge integers, unknown enum values and NaNs) for EVERY RPC, sent directly to the
service (grpclib) and through the gateway (NGINX -> Envoy) as gRPC-Web and as REST.

Only the statuses the contract allows may come back (OK, INVALID_ARGUMENT, NOT_FOUND,
UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION, ALREADY_EXISTS, RESOURCE_EXHAUSTED;
for REST their HTTP mappings 200/400/401/403/404/409/429): never INTERNAL, UNKNOWN or 5xx.
A rejected PlaceOrder leaves no order and no reservation (checked against FerretDB and the
stock). Oversized bodies and deeply nested payloads are refused at the edge (413 / 400).

Calls carry a token that passes the access check (a user token for user methods, the demo
admin for admin methods, a service token for internal ones) so the handlers themselves are
exercised; side effects are fenced: ids point at this test's own products, users and
orders or at nothing, CreateProduct lands in the "fuzz" category, ReplayDeadLetters names
event ids that do not exist.

Request strategies: tests/reliability/fuzz_requests.py; the fuzzed world and its
transports: tests/reliability/fuzz_world.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, Phase, given, settings
from motor.motor_asyncio import AsyncIOMotorClient

from mesh.api import Method
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.order.v1 import order_pb2 as opb
from tests.reliability.fuzz_requests import METHODS, message_class
from tests.reliability.fuzz_world import (
    ALLOWED,
    CALL_TIMEOUT,
    STOCK,
    Loop,
    Transports,
    World,
    call_timeout,
)
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    PORTS,
    SCALE,
    Stubs,
    admin_account,
    create_product,
    register,
    stock_of,
)

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(SCALE.timeout_s)]

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loop() -> Loop:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def world(stack, loop: Loop) -> World:
    stack.require("nginx", *PORTS)  # every service whose methods it fuzzes

    async def setup() -> World:
        stubs = Stubs()
        try:
            tag = f"fz-{uuid.uuid4().hex[:6]}"
            owner, placer = await register(stubs, tag), await register(stubs, tag)
            admin = await admin_account(stubs)
            scratch = (await create_product(stubs, tag, STOCK)).id
            placer_products = {}
            for _ in range(2):
                p = await create_product(stubs, tag, STOCK)
                placer_products[p.id] = STOCK
            own_orders = []
            for i in range(3):
                reply = await stubs.order.PlaceOrder(
                    opb.PlaceOrderRequest(
                        idempotency_key=f"{tag}-own-{i}",
                        user_id=owner.user_id,
                        lines=[opb.LineItem(product_id=scratch, quantity=1)],
                        shipping_address=ADDRESS,
                    ),
                    metadata=owner.bearer,
                    timeout=15,
                )
                own_orders.append(reply.order.id)
            from shop.user.v1 import user_pb2

            added = await stubs.user.AddAddress(
                user_pb2.AddAddressRequest(user_id=owner.user_id, address=ADDRESS),
                metadata=owner.bearer,
                timeout=10,
            )
            return World(
                owner,
                placer,
                admin,
                own_orders,
                scratch,
                placer_products,
                added.address.id,
            )
        finally:
            stubs.close()

    return loop.run(setup())


@pytest.fixture(scope="module")
def transports(stack, loop: Loop, world: World) -> Transports:
    t = loop.run(_make_transports(stack.nginx_url))
    yield t
    loop.run(t.close())


async def _make_transports(url: str) -> Transports:
    return Transports(url)


# ---------------------------------------------------------------- the fuzz tests

CASES = [
    (m, t)
    for m in METHODS
    for t in ("direct", "grpc_web", "rest")
    if t == "direct" or (m.edge and (t == "grpc_web" or m.http))
]


def examples_for(m: Method) -> int:
    # Login/refresh failures count against the per-address throttle the whole shared stack
    # logs in from: a few cases suffice (most inputs fail validation before it anyway).
    if m.service.endswith("AuthService"):
        return min(SCALE.fuzz_examples, 10)
    return SCALE.fuzz_examples


@pytest.mark.parametrize(("method", "transport"), CASES, ids=[f"{m.name}-{t}" for m, t in CASES])
def test_fuzz_rpc_answers_only_contract_statuses(
    method: Method, transport: str, world, transports, loop, stack
):
    strategy = world.strategy_for(method)
    send: Callable[..., Any] = getattr(transports, transport)
    token = world.token_for(method)
    codes: Counter[str] = Counter()
    accepted_orders: set[str] = set()
    cases = [0]

    @settings(
        max_examples=examples_for(method),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(req: Message) -> None:
        try:
            answer = loop.run(send(method, req, token), timeout=call_timeout(method) * 2)
        except ValueError:  # REST: a value JSON cannot carry (NaN in int64, ...): not sendable
            return
        cases[0] += 1
        codes[answer.code] += 1
        assert answer.ok, (
            f"{method.name} via {transport} answered {answer.code}: {answer.detail!r}\n"
            f"request: {req}"
        )
        if method.name == "PlaceOrder" and answer.reply is not None and answer.reply.order.id:
            accepted_orders.add(answer.reply.order.id)

    try:
        one()
    finally:
        entry = FIGURES.fuzz.setdefault(method.name, {"statuses": {}})
        entry[transport] = cases[0]
        for k, v in codes.items():
            entry["statuses"][k] = entry["statuses"].get(k, 0) + v
    if method.name == "PlaceOrder":
        # Valid requests are a third of the draws: some must have been placed, or the
        # no-partial-write check below proves nothing about the success path.
        assert accepted_orders, f"no PlaceOrder accepted via {transport}: {dict(codes)}"
        loop.run(check_no_partial_orders(stack, world, accepted_orders))


async def check_no_partial_orders(stack, world: World, accepted: set[str]) -> None:
    """Rejected placements left nothing: the placer's live orders are exactly the accepted
    ones, and the stock moved by exactly their quantities (no leaked reservation)."""
    client = AsyncIOMotorClient(stack.mongo_url(), serverSelectionTimeoutMS=10_000)
    try:
        docs = [
            d
            async for d in client["order"]["orders"].find(
                {"user_id": world.placer.user_id}, {"status": 1, "items": 1}
            )
        ]
    finally:
        client.close()
    live = {d["_id"]: d for d in docs if d["status"] != "FAILED"}
    assert all(d["status"] == "CONFIRMED" for d in live.values()), live
    assert accepted <= set(live), f"accepted but not stored: {accepted - set(live)}"
    stubs = Stubs()
    try:
        for pid, initial in world.placer_products.items():
            taken = sum(
                i["quantity"] for d in live.values() for i in d["items"] if i["product_id"] == pid
            )
            for _ in range(20):  # the replica may lag a moment behind the primary
                have = await stock_of(stubs, pid)
                if have == initial - taken:
                    break
                await asyncio.sleep(0.5)
            assert have == initial - taken, f"{pid}: stock {have}, expected {initial - taken}"
    finally:
        stubs.close()


# ---------------------------------------------------------------- edge limits


def test_oversized_body_is_413_at_nginx(world, transports, loop):
    async def go() -> list[int]:
        big = b"x" * (2 * 1024 * 1024)
        out = []
        r = await transports.http.post(
            "/api/v1/orders",
            content=big,
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {world.placer.token}",
            },
        )
        out.append(r.status_code)
        r = await transports.http.post(
            "/api/shop.product.v1.ProductService/SearchProducts",
            content=grpc_web_request(big),
            headers=GRPC_WEB_HEADERS,
        )
        out.append(r.status_code)
        return out

    codes = loop.run(go())
    FIGURES.security["oversized bodies -> 413"] = len(codes)
    assert codes == [413, 413], codes


def test_deep_nesting_is_rejected_not_crashing(world, transports, loop):
    """JSON nested 100,000 deep (REST) and a protobuf of 10,000 nested groups (gRPC-Web and
    direct): a 4xx / INVALID_ARGUMENT, never a 5xx or INTERNAL, and the service stays up."""
    depth = 100_000
    deep_json = ('{"lines":' + "[" * depth + "]" * depth + "}").encode()
    # Field 15 as a start-group tag, 10,000 times: parsers recurse once per level.
    deep_proto = b"\x7b" * 10_000 + b"\x7c" * 10_000
    search = next(m for m in METHODS if m.name == "SearchProducts")

    async def go() -> list[Any]:
        r1 = await transports.http.post(
            "/api/v1/orders",
            content=deep_json,
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {world.placer.token}",
            },
        )
        r2 = await transports.http.post(
            f"/api{search.grpc_path}",
            content=grpc_web_request(deep_proto),
            headers=GRPC_WEB_HEADERS,
        )
        _, trailers = (
            grpc_web_parse(r2.content, dict(r2.headers)) if r2.status_code == 200 else ((), {})
        )
        direct = await raw_direct(search, deep_proto)
        alive = await transports.direct(
            search, message_class(search.input_type)(query="phone"), None
        )
        return [r1.status_code, r2.status_code, trailers.get("grpc-status"), direct, alive.code]

    rest_code, web_http, web_status, direct_status, alive = loop.run(go())
    FIGURES.security["deep nesting (REST, gRPC-Web, direct)"] = 3
    assert rest_code == 400, rest_code
    assert web_http in (200, 400) and web_status != str(Status.INTERNAL.value), (
        web_http,
        web_status,
    )
    if web_status is not None:
        assert Status(int(web_status)) in ALLOWED, web_status
    assert direct_status in {s.name for s in ALLOWED}, direct_status
    assert alive == "OK"


async def raw_direct(m: Method, payload: bytes) -> str:
    """Send undecodable bytes as the request message, bypassing client-side encoding."""

    class Raw:
        def __init__(self, data: bytes = b"") -> None:
            self.data = data

        def SerializeToString(self) -> bytes:
            return self.data

        @classmethod
        def FromString(cls, data: bytes) -> Raw:
            return cls(data)

    channel = Channel("127.0.0.1", PORTS[m.service.split(".")[1]])
    try:
        async with channel.request(
            m.grpc_path, Cardinality.UNARY_UNARY, Raw, Raw, timeout=CALL_TIMEOUT
        ) as stream:
            await stream.send_message(Raw(payload), end=True)
            await stream.recv_message()
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status.name
    finally:
        channel.close()
    return "OK"
