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
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from motor.motor_asyncio import AsyncIOMotorClient

from mesh.api import Method, load
from mesh.generate import DESCRIPTOR
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.order.v1 import order_pb2 as opb
from tests.reliability.harness import (
    ADDRESS,
    FIGURES,
    PORTS,
    SCALE,
    Account,
    Stubs,
    admin_account,
    create_product,
    register,
    service_token,
    stock_of,
)

pytestmark = [pytest.mark.stack, pytest.mark.soak, pytest.mark.timeout(SCALE.timeout_s)]

API = load(DESCRIPTOR)
METHODS = sorted(API.methods, key=lambda m: m.grpc_path)
for _svc in {m.service for m in METHODS}:  # register every request type in the pool
    _pkg = _svc.rsplit(".", 1)[0]
    importlib.import_module(f"{_pkg.replace('.', '.')}.{_pkg.split('.')[1]}_pb2")
POOL = descriptor_pool.Default()

ALLOWED = {
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.UNAUTHENTICATED,
    Status.PERMISSION_DENIED,
    Status.FAILED_PRECONDITION,
    Status.ALREADY_EXISTS,
    Status.RESOURCE_EXHAUSTED,
}
ALLOWED_HTTP = {200, 400, 401, 403, 404, 409, 429}
STOCK = 100_000
CALL_TIMEOUT = 15.0


def call_timeout(m: Method) -> float:
    """The client waits at least as long as the method's schema deadline allows the server
    (ReplayDeadLetters may scan a dead-letter topic for up to 30 s), plus a margin."""
    return max(CALL_TIMEOUT, m.timeout_ms / 1000 + 5)


INJECTIONS = [
    "' OR 1=1 --",
    "' OR '1'='1",
    "'; DROP TABLE products; --",
    "1; SELECT pg_sleep(10)",
    '{"$gt": ""}',
    '{"$ne": null}',
    "$where",
    "this.password.length > 0",
    "$regex",
    ".*",
    "%",
    "_",
    "\\",
    "\\x00",
    "\x00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "\u202e\u0645",
    "😀" * 20,
    "a" * 600,
    " ",
    "\r\nBcc: victim@example.com",
    "p-0001",
    "USD",
    "null",
    "true",
    "-1",
    "1e309",
]


def message_class(name: str) -> type[Message]:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


# ---------------------------------------------------------------- strategies from descriptors

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
IDENT = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
STRINGS = st.one_of(st.sampled_from(INJECTIONS), TEXT, IDENT, st.emails(), st.just(""))
INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 5, 50, 51, 100, 101, 2**31 - 1])
)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 10**15]))
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: STRINGS,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
}
TIMESTAMP = st.one_of(
    st.integers(0, 4_102_444_800), st.integers(-62_135_596_800, 253_402_300_799)
).map(lambda s: message_class("google.protobuf.Timestamp")(seconds=s))


def field_strategy(f: FieldDescriptor, overrides: dict[str, Any], depth: int) -> Any:
    if f.full_name in overrides:
        return overrides[f.full_name]
    if f.type == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-3, 40))  # open enums
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.full_name == "google.protobuf.Timestamp":
            return TIMESTAMP
        if depth >= 3:
            return st.none()
        return message_strategy(f.message_type, overrides, depth + 1)
    return SCALARS[f.type]


def message_strategy(
    desc: Descriptor, overrides: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Any instance of `desc`: each field unset or drawn from its type (repeated: 0-4)."""
    cls = message_factory.GetMessageClass(desc)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue  # no maps in our requests; skipped rather than guessed
        inner = field_strategy(f, overrides, depth)
        is_list = f.is_repeated
        if is_list and f.full_name not in overrides:
            inner = st.lists(inner, max_size=4)
        optional[f.name] = inner

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            if value is None:
                continue
            f = desc.fields_by_name[name]
            if f.is_repeated:
                target = getattr(msg, name)
                for v in value:
                    if v is None:
                        continue
                    if f.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(v)
                    else:
                        target.append(v)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=optional).map(build)


def one_field_mutated(
    valid: st.SearchStrategy[Message], overrides: dict[str, Any]
) -> st.SearchStrategy[Message]:
    """A valid request with exactly one field (top level or nested, scalar or message)
    replaced by a value drawn for that field: the inputs most likely to get past some
    checks and trip a later one, where partial writes happen."""

    def slots(msg: Message) -> list[tuple[Message, FieldDescriptor]]:
        out = []
        for f in msg.DESCRIPTOR.fields:
            out.append((msg, f))
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.full_name != (
                "google.protobuf.Timestamp"
            ):
                inner = getattr(msg, f.name)
                for child in inner if f.is_repeated else [inner]:
                    out.extend(slots(child))
        return out

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = draw(valid)
        target, f = draw(st.sampled_from(slots(msg)))
        value = draw(field_strategy(f, overrides, 1))
        target.ClearField(f.name)
        if value is None:  # depth-capped message: the field stays cleared
            return msg
        if f.is_repeated:  # a list of one drawn element in place of the valid list
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(target, f.name).add().CopyFrom(value)
            else:
                getattr(target, f.name).append(value)
        else:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(target, f.name).CopyFrom(value)
            else:
                setattr(target, f.name, value)
        return msg

    return build()


# ---------------------------------------------------------------- the world being fuzzed


@dataclass
class World:
    """Accounts and data the fuzzer may touch; nothing else is reachable by id."""

    owner: Account
    placer: Account
    admin: Account
    own_orders: list[str]
    scratch_product: str
    placer_products: dict[str, int]  # id -> stock before the PlaceOrder fuzz
    address_id: str
    figures: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))

    def overrides(self) -> dict[str, Any]:
        def mix(*known: str) -> st.SearchStrategy[str]:
            return st.one_of(st.sampled_from(list(known)), STRINGS)

        uid = mix(self.owner.user_id)
        return {
            "shop.order.v1.PlaceOrderRequest.user_id": mix(self.placer.user_id),
            "shop.order.v1.PlaceOrderRequest.idempotency_key": st.one_of(
                st.from_regex(r"fz[A-Za-z0-9_.:-]{6,30}", fullmatch=True), STRINGS
            ),
            "shop.order.v1.LineItem.product_id": mix(*self.placer_products),
            "shop.order.v1.GetOrderRequest.id": mix(*self.own_orders),
            "shop.order.v1.CancelOrderRequest.id": mix(*self.own_orders),
            "shop.order.v1.UpdateOrderStatusRequest.id": mix(*self.own_orders),
            "shop.order.v1.ListOrdersRequest.user_id": uid,
            "shop.product.v1.GetProductRequest.id": mix(self.scratch_product, "p-0001"),
            "shop.product.v1.UpdateProductRequest.id": mix(self.scratch_product),
            "shop.product.v1.CreateProductRequest.category": st.sampled_from(
                ["fuzz", "", "Fuzz Category!", "f" * 65, "' OR 1=1 --"]
            ),
            "shop.product.v1.StockLine.product_id": mix(self.scratch_product),
            "shop.product.v1.ReserveStockRequest.order_id": st.one_of(
                st.from_regex(r"fz-[a-z0-9]{8,20}", fullmatch=True), STRINGS
            ),
            "shop.user.v1.GetUserRequest.id": uid,
            "shop.user.v1.UpdateProfileRequest.id": uid,
            "shop.user.v1.AddAddressRequest.user_id": uid,
            "shop.user.v1.ListAddressesRequest.user_id": uid,
            "shop.user.v1.RemoveAddressRequest.user_id": uid,
            "shop.user.v1.RemoveAddressRequest.address_id": mix(self.address_id),
            "shop.notification.v1.ListNotificationsRequest.user_id": uid,
            # Never empty: an empty list would replay every dead letter of the shared stack.
            "shop.notification.v1.ReplayDeadLettersRequest.event_ids": st.lists(
                st.uuids().map(str), min_size=1, max_size=3
            ),
        }

    def valid_place_order(self) -> st.SearchStrategy[Message]:
        """A PlaceOrder that should be accepted: the placer, 1-2 of its products, a sane
        quantity, a real address, a fresh key."""
        lines = st.lists(
            st.tuples(st.sampled_from(sorted(self.placer_products)), st.integers(1, 3)),
            min_size=1,
            max_size=2,
            unique_by=lambda line: line[0],
        )
        return st.builds(
            lambda key, items: opb.PlaceOrderRequest(
                idempotency_key=key,
                user_id=self.placer.user_id,
                lines=[opb.LineItem(product_id=p, quantity=q) for p, q in items],
                shipping_address=ADDRESS,
            ),
            st.from_regex(r"fzv[A-Za-z0-9]{16}", fullmatch=True),
            lines,
        )

    def strategy_for(self, m: Method) -> st.SearchStrategy[Message]:
        """Any request of the method's type; for PlaceOrder also valid ones and valid ones
        with one field mutated, so the success path and late rejections are exercised."""
        generic = message_strategy(POOL.FindMessageTypeByName(m.input_type), self.overrides())
        if m.name != "PlaceOrder":
            return generic
        valid = self.valid_place_order()
        return st.one_of(valid, one_field_mutated(valid, self.overrides()), generic)

    def token_for(self, m: Method) -> str | None:
        if m.access == "public":
            return None
        if m.access == "internal":  # as the first service the schema names as its caller
            return service_token(m.callers[0])
        if m.access == "admin":
            return self.admin.token
        return self.placer.token if m.name == "PlaceOrder" else self.owner.token


# ---------------------------------------------------------------- transports


class Loop:
    """A private event loop on a thread: hypothesis drives sync test functions."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Answer:
    code: str  # gRPC status name, or HTTP_<n> for a gateway answer without one
    ok: bool
    reply: Message | None
    detail: str


class Transports:
    def __init__(self, nginx_url: str) -> None:
        self.channels: dict[int, Channel] = {}
        self.http = httpx.AsyncClient(base_url=nginx_url, timeout=CALL_TIMEOUT)

    async def close(self) -> None:
        for c in self.channels.values():
            c.close()
        await self.http.aclose()

    async def direct(self, m: Method, req: Message, token: str | None) -> Answer:
        port = PORTS[m.service.split(".")[1]]
        channel = self.channels.setdefault(port, Channel("127.0.0.1", port))
        resp_cls = message_class(m.output_type)
        md = {"authorization": f"Bearer {token}"} if token else None
        try:
            async with channel.request(
                m.grpc_path,
                Cardinality.UNARY_UNARY,
                type(req),
                resp_cls,
                timeout=call_timeout(m),
                metadata=md,
            ) as stream:
                await stream.send_message(req, end=True)
                reply = await stream.recv_message()
                await stream.recv_trailing_metadata()
        except GRPCError as exc:
            return Answer(exc.status.name, exc.status in ALLOWED, None, exc.message or "")
        except (TimeoutError, StreamTerminatedError, ProtocolError, OSError) as exc:
            return Answer(type(exc).__name__, False, None, str(exc))
        return Answer("OK", True, reply, "")

    async def grpc_web(self, m: Method, req: Message, token: str | None) -> Answer:
        headers = dict(GRPC_WEB_HEADERS)
        if token:
            headers["authorization"] = f"Bearer {token}"
        r = await self.http.post(
            f"/api{m.grpc_path}",
            content=grpc_web_request(req.SerializeToString()),
            headers=headers,
            timeout=call_timeout(m),
        )
        if r.status_code != 200:
            return Answer(
                f"HTTP_{r.status_code}", r.status_code in (401, 403, 429), None, r.text[:200]
            )
        messages, trailers = grpc_web_parse(r.content, dict(r.headers))
        status = Status(int(trailers.get("grpc-status", "2")))
        reply = message_class(m.output_type).FromString(messages[0]) if messages else None
        detail = urllib.parse.unquote(trailers.get("grpc-message", ""))
        return Answer(status.name, status in ALLOWED, reply, detail)

    async def rest(self, m: Method, req: Message, token: str | None) -> Answer | None:
        rule = m.http[0]
        body = json_format.MessageToDict(req, preserving_proto_field_name=True)
        path = rule.path
        for p in rule.path_params:
            value = str(body.pop(p, ""))
            path = path.replace("{" + p + "}", urllib.parse.quote(value, safe=""))
        headers = {"authorization": f"Bearer {token}"} if token else {}
        wait = call_timeout(m)
        if rule.body:
            r = await self.http.request(
                rule.verb.upper(), path, json=body, headers=headers, timeout=wait
            )
        else:
            r = await self.http.request(
                rule.verb.upper(), path, params=list(flatten(body)), headers=headers, timeout=wait
            )
        reply = None
        if r.status_code == 200:
            reply = json_format.ParseDict(
                r.json(), message_class(m.output_type)(), ignore_unknown_fields=True
            )
        bad = r.status_code not in ALLOWED_HTTP or "Traceback" in r.text
        return Answer(f"HTTP_{r.status_code}", not bad, reply, r.text[:200])


def flatten(value: Any, prefix: str = "") -> Any:
    """Query parameters for a GET: nested fields as a.b=..., repeated as repeated keys."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for v in value:
            yield from flatten(v, prefix)
    else:
        yield prefix, value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loop() -> Loop:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def world(stack, loop: Loop) -> World:
    stack.require("nginx", "order", "notification", "auth")

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
