"""What the reliability tests share: the run's scale (short for `make test`, long for
`make soak`), accounts with real tokens, gRPC stubs, fresh products, and the figures every
test records for bench/results/reliability.json and REPORT.md.

Everything talks to the real stack on 127.0.0.1 as a client would: users register and log
in through the user and auth services and place orders with their own access token; test
setup (creating products) is the demo admin's, and a call to an internal method is made as
the service the schema names as its caller (stack/callers.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.auth.v1 import auth_pb2
from shop.auth.v1.auth_grpc import AuthServiceStub
from shop.common.v1 import common_pb2
from shop.notification.v1.notification_grpc import NotificationServiceStub
from shop.order.v1 import order_pb2
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from shop.user.v1 import user_pb2
from shop.user.v1.user_grpc import UserServiceStub
from stack.callers import admin_bearer, as_platform, service_identity

SOAK = os.environ.get("SHOPMESH_SOAK") == "1"

PORTS = {name: service.port for name, service in SERVICES.items()}  # every manifest service
ADMIN = ("admin@shopmesh.local", "shopmesh-admin")  # demo admin (services/user/demo.py)
PASSWORD = "reliability-" + uuid.uuid4().hex[:12]
ADDRESS = common_pb2.Address(
    recipient_name="Rel Tester",
    line1="1 Loopback Way",
    city="Lyon",
    postal_code="69001",
    country_code="FR",
)


@dataclass(frozen=True)
class Scale:
    """Bounds of one run. Env overrides (RELIABILITY_ORDERS, ...) are for local tuning only.

    Short: 1,000 orders at 10/s (~2 minutes with the faults and convergence), 25 fuzz cases
    per RPC and transport. Soak: 10,000 orders at 15/s (~12 minutes), 100 fuzz cases (the
    fuzz part then takes ~20 minutes on this 2-core box)."""

    orders: int
    rate_per_s: float
    concurrency: int
    buyers: int
    fuzz_examples: int
    converge_s: float
    timeout_s: int

    @classmethod
    def current(cls) -> Scale:
        base = (
            cls(10_000, 15.0, 24, 50, 100, 900.0, 7200)
            if SOAK
            else cls(1_000, 10.0, 16, 20, 25, 300.0, 900)
        )
        env = os.environ.get

        return cls(
            orders=int(env("RELIABILITY_ORDERS", base.orders)),
            rate_per_s=float(env("RELIABILITY_RATE", base.rate_per_s)),
            concurrency=int(env("RELIABILITY_CONCURRENCY", base.concurrency)),
            buyers=base.buyers,
            fuzz_examples=int(env("RELIABILITY_FUZZ_EXAMPLES", base.fuzz_examples)),
            converge_s=base.converge_s,
            timeout_s=base.timeout_s,
        )


SCALE = Scale.current()


# ---------------------------------------------------------------- figures


@dataclass
class Figures:
    """What the run measured; the session writes it out (report.py)."""

    mode: str = "soak" if SOAK else "short"
    orders: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    oversell: dict[str, Any] = field(default_factory=dict)
    fuzz: dict[str, dict[str, Any]] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, str] = field(default_factory=dict)  # nodeid -> outcome
    failures: dict[str, str] = field(default_factory=dict)  # nodeid -> short reason


FIGURES = Figures()


# ---------------------------------------------------------------- clients


class Stubs:
    """One channel per service, direct (no mesh). Channels reconnect by themselves after a
    service restart, so the same stubs survive the fault injection. `platform`: every call
    as someone its method allows (the demo admin; an internal method as its caller)."""

    def __init__(self, platform: bool = False) -> None:
        self.channels = {
            name: (
                as_platform(Channel("127.0.0.1", port)) if platform else Channel("127.0.0.1", port)
            )
            for name, port in PORTS.items()
        }
        c = self.channels
        self.product = ProductServiceStub(c["product"])
        self.user = UserServiceStub(c["user"])
        self.order = OrderServiceStub(c["order"])
        self.notification = NotificationServiceStub(c["notification"])
        self.auth = AuthServiceStub(c["auth"])

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


def service_token(name: str) -> str:
    """Service `name`'s own token (its dev identity): what that service itself sends."""
    return service_identity(name).token()


@dataclass
class Account:
    """A signed-in user; `metadata()` logs in again before the access token gets old (soak
    runs outlive the 15-minute tokens)."""

    user_id: str
    email: str
    password: str
    token: str = ""
    token_at: float = 0.0
    roles: tuple[str, ...] = ()

    async def login(self, auth: AuthServiceStub) -> None:
        for attempt in range(10):
            try:
                reply = await auth.Login(
                    auth_pb2.LoginRequest(email=self.email, password=self.password), timeout=10
                )
                break
            except (TimeoutError, GRPCError, OSError) as exc:
                status = getattr(exc, "status", None)
                if status not in (None, Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED):
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"cannot log in {self.email}")
        self.token = reply.tokens.access_token
        self.user_id = reply.tokens.user_id or self.user_id
        self.token_at = time.monotonic()

    async def metadata(self, auth: AuthServiceStub) -> dict[str, str]:
        if not self.token or time.monotonic() - self.token_at > 600:
            await self.login(auth)
        return {"authorization": f"Bearer {self.token}"}

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


async def register(stubs: Stubs, tag: str, display_name: str = "Rel Tester") -> Account:
    email = f"rel-{tag}-{uuid.uuid4().hex[:10]}@example.com"
    reply = await stubs.user.RegisterUser(
        user_pb2.RegisterUserRequest(email=email, password=PASSWORD, display_name=display_name),
        timeout=15,
    )
    account = Account(reply.user.id, email, PASSWORD)
    await account.login(stubs.auth)
    return account


async def register_many(stubs: Stubs, tag: str, n: int) -> list[Account]:
    sem = asyncio.Semaphore(4)  # argon2id per registration: keep the box responsive

    async def one() -> Account:
        async with sem:
            return await register(stubs, tag)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def admin_account(stubs: Stubs) -> Account:
    account = Account("", *ADMIN)
    await account.login(stubs.auth)
    return account


async def create_product(stubs: Stubs, tag: str, stock: int, units: int = 2) -> product_pb2.Product:
    """A fresh product (CreateProduct is an admin's: the demo admin makes it)."""
    reply = await stubs.product.CreateProduct(
        product_pb2.CreateProductRequest(
            sku=f"REL-{tag}-{uuid.uuid4().hex[:8]}".upper(),
            name=f"Reliability {tag}",
            category="reliability",
            price=common_pb2.Money(currency_code="USD", units=units),
            stock=stock,
        ),
        metadata=await admin_bearer(),
        timeout=10,
    )
    return reply.product


def new_traceparent(trace_id: str) -> str:
    """A sampled W3C traceparent for `trace_id` (32 hex), as a browser call would start one."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def place_traced_order(
    admin: Stubs, stubs: Stubs, tag: str
) -> tuple[order_pb2.Order, Account, str]:
    """A fresh product and buyer, and one order placed direct under a new trace id:
    (the order, the buyer, the trace id)."""
    product = await create_product(admin, f"{tag}{uuid.uuid4().hex[:6]}", 5)
    buyer = await register(stubs, tag)
    trace_id = secrets.token_hex(16)
    metadata = {**(await buyer.metadata(stubs.auth)), "traceparent": new_traceparent(trace_id)}
    reply = await stubs.order.PlaceOrder(
        order_pb2.PlaceOrderRequest(
            idempotency_key=f"{tag}-{uuid.uuid4().hex}",
            user_id=buyer.user_id,
            lines=[order_pb2.LineItem(product_id=product.id, quantity=1)],
            shipping_address=ADDRESS,
        ),
        metadata=metadata,
        timeout=30,
    )
    return reply.order, buyer, trace_id


async def stock_of(stubs: Stubs, product_id: str) -> int:
    reply = await stubs.product.GetProduct(product_pb2.GetProductRequest(id=product_id), timeout=10)
    return reply.product.stock


async def eventually(check, *, within: float, every: float = 1.0):  # type: ignore[no-untyped-def]
    """Poll an async `check()` until it returns a truthy value or `within` seconds pass;
    returns the last value (falsy on timeout) so the caller asserts with its own message."""
    deadline = time.monotonic() + within
    value = await check()
    while not value and time.monotonic() < deadline:
        await asyncio.sleep(every)
        value = await check()
    return value
