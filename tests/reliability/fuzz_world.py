"""What tests/reliability/test_fuzz.py fuzzes and how it calls it: the world (this test's own
products, users and orders, so side effects stay fenced), the statuses the contract allows,
and one transport per path (direct gRPC, gRPC-Web and REST through the gateway).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from hypothesis import strategies as st

from mesh.api import Method
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from shop.order.v1 import order_pb2 as opb
from tests.reliability.fuzz_requests import (
    POOL,
    STRINGS,
    message_class,
    message_strategy,
    one_field_mutated,
)
from tests.reliability.harness import (
    ADDRESS,
    PORTS,
    Account,
    service_token,
)

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
