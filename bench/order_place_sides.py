"""The two sides bench/order_place_ab.py compares: each side's order server (and, with
--product-base, its own product server) started from its own tree, the shared fixtures
(products, a shopper and its token), seeding, and CPU per part of a side.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    free_port,
    wait_grpc_serving,
)

MONGO = "mongodb://127.0.0.1:27017/"
FIXTURE_TAG = uuid.uuid4().hex[:8]  # the shopper is ab-<tag>@example.com
# How an order server reaches product and user (ORDER_PRODUCT_ADDR, ORDER_USER_ADDR).
S2S = {
    "direct": ("127.0.0.1:50051", "127.0.0.1:50052"),
    "envoy": ("127.0.0.1:8082", "127.0.0.1:8082"),  # the stack's internal listener
}


class Side:
    """One order server subprocess (code from `tree`), its channel and scratch database."""

    def __init__(
        self,
        name: str,
        tree: Path,
        mongo_url: str,
        s2s: str = "direct",
        product_tree: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.env = env or {}  # set for this side's order server only (--base-env/--new-env)
        self.tree = tree
        self.mongo_url = mongo_url
        self.s2s = s2s
        self.product_tree = product_tree  # a product server of its own, from this tree
        self.product_port = free_port()
        self.product: subprocess.Popen[bytes] | None = None
        self.database = f"order_ab_{name}_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Any = None
        self.stub: Any = None

    def start(self) -> None:
        if self.product_tree is not None:
            self.product = subprocess.Popen(
                [sys.executable, "-m", "services.product.main"],
                cwd=self.product_tree,
                env={
                    **os.environ,
                    "PYTHONPATH": f"{self.product_tree}:{self.product_tree / 'gen' / 'python'}",
                    "PRODUCT_GRPC_PORT": str(self.product_port),
                    "PRODUCT_METRICS_PORT": str(free_port()),
                    "PRODUCT_WORKERS": "1",
                    "PRODUCT_ACCESS_LOG": "off",
                    "PRODUCT_LOG_LEVEL": "WARNING",
                    "SHOPMESH_TRACE_DIR": f"/tmp/{self.database}-product-traces",
                },
            )
        env = {
            **os.environ,
            "PYTHONPATH": f"{self.tree}:{self.tree / 'gen' / 'python'}",
            "ORDER_GRPC_PORT": str(self.port),
            "ORDER_METRICS_PORT": str(free_port()),
            "ORDER_MONGO_URL": self.mongo_url,
            "ORDER_MONGO_DATABASE": self.database,
            "ORDER_PRODUCT_ADDR": (
                f"127.0.0.1:{self.product_port}" if self.product_tree else S2S[self.s2s][0]
            ),
            "ORDER_WORKERS": "1",
            "ORDER_USER_ADDR": S2S[self.s2s][1],
            "ORDER_RELAY_ENABLED": "false",
            "ORDER_SWEEP_INTERVAL_S": "0",
            "ORDER_ACCESS_LOG": "off",
            "ORDER_LOG_LEVEL": "WARNING",
            # Each side its own span file: the tree's .stack/traces is shared with the stack's
            # order service (found as a 0.7x handicap of the working-tree side).
            "SHOPMESH_TRACE_DIR": f"/tmp/{self.database}-traces",
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.order.main"], cwd=self.tree, env=env
        )

    async def connect(self) -> None:
        from grpclib.client import Channel

        from shop.order.v1.order_grpc import OrderServiceStub
        from stack.callers import as_platform

        if self.product is not None:
            await wait_grpc_serving(self.product_port, 60)
        await wait_grpc_serving(self.port, 60)
        self.channel = as_platform(Channel("127.0.0.1", self.port))
        self.stub = OrderServiceStub(self.channel)
        # As the shopper (--as-shopper): a plain channel, the user's token per call.
        self.shopper_channel = Channel("127.0.0.1", self.port)
        self.shopper_stub = OrderServiceStub(self.shopper_channel)

    async def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.shopper_channel.close()
        for proc in (self.proc, self.product):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(self.mongo_url, serverSelectionTimeoutMS=3000)
        with contextlib.suppress(Exception):
            await client.drop_database(self.database)
        client.close()


async def fixtures(products: int = 32) -> tuple[str, list[str]]:
    """A fresh user and products with stock for every call of the run (many products, so
    ReserveStock does not queue on one PostgreSQL row)."""
    from grpclib.client import Channel

    from shop.common.v1 import common_pb2
    from shop.product.v1 import product_pb2
    from shop.product.v1.product_grpc import ProductServiceStub
    from shop.user.v1 import user_pb2
    from shop.user.v1.user_grpc import UserServiceStub
    from stack.callers import as_platform

    tag = FIXTURE_TAG
    pch = as_platform(Channel("127.0.0.1", 50051))
    uch = as_platform(Channel("127.0.0.1", 50052))
    try:
        user = (
            await UserServiceStub(uch).RegisterUser(
                user_pb2.RegisterUserRequest(
                    email=f"ab-{tag}@example.com", password="bench-password-1", display_name="AB"
                )
            )
        ).user
        ids = [
            (
                await ProductServiceStub(pch).CreateProduct(
                    product_pb2.CreateProductRequest(
                        sku=f"AB-{tag}-{i}", name="AB thing", category="bench",
                        price=common_pb2.Money(currency_code="USD", units=3), stock=1_000_000,
                    )
                )
            ).product.id
            for i in range(products)
        ]  # fmt: skip
    finally:
        pch.close()
        uch.close()
    return user.id, ids


async def shopper_token(user_id: str, email: str, password: str = "bench-password-1") -> str:
    """An access token of the bench's shopper (auth Login), for `--as-shopper`."""
    from grpclib.client import Channel

    from shop.auth.v1 import auth_pb2
    from shop.auth.v1.auth_grpc import AuthServiceStub

    channel = Channel("127.0.0.1", 50055)
    try:
        login = await AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=password)
        )
    finally:
        channel.close()
    return login.tokens.access_token


async def seed(side: Side, n: int) -> None:
    """n confirmed orders of other users in the side's database, as the service stores them
    (inserted in bulk: the service's own path would take minutes per side)."""
    import datetime as dt

    from motor.motor_asyncio import AsyncIOMotorClient

    from bench.order_fixtures import confirmed_order
    from services.order.repository import to_doc

    client = AsyncIOMotorClient(side.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        orders = client[side.database]["orders"]
        for start in range(0, n, 500):
            docs = []
            for i in range(start, min(n, start + 500)):
                order, lines = confirmed_order(f"seed-user-{i % 97}", i)
                order.confirm(lines, dt.datetime.now(dt.UTC), None)
                docs.append(to_doc(order) | {"pending_events": [], "outbox": False})
            await orders.insert_many(docs)
    finally:
        client.close()


# Shared processes whose CPU a round charges to the side running it (sides alternate, so
# a round's CPU is that side's, beside whatever else the machine does meanwhile).
SHARED = {
    "ferretdb": lambda c: "ferretdb-v" in c,
    "pg_ferretdb": lambda c: c.startswith("postgres:") and " ferretdb " in c,
    "pg_product": lambda c: c.startswith("postgres:") and " product " in c,
    "pg_user": lambda c: c.startswith("postgres:") and " user " in c,
    "user": lambda c: "services.user" in c,
    # The stack's Envoy: the internal listener's hops (--base-s2s/--new-s2s envoy).
    "envoy": lambda c: "/_bin/envoy " in c and not c.startswith("/bin/sh"),
}


def cpu_by_part(side: Side) -> dict[str, float]:
    """CPU seconds so far: the side's order (and product) server, and the shared parts (the
    stack's product service when the side has none of its own)."""
    from bench.common import proc_cpu_s

    own = {"order": side.proc.pid if side.proc else 0}
    if side.product is not None:
        own["product"] = side.product.pid
    shared = dict(SHARED)
    if side.product is None:
        shared["product"] = lambda c: "services.product" in c
    out = {part: proc_cpu_s(pid) if pid else 0.0 for part, pid in own.items()}
    out |= dict.fromkeys(shared, 0.0)
    mine = set(own.values())
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in mine:
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for part, match in shared.items():
            if match(cmd):
                out[part] += proc_cpu_s(int(d))
                break
    return out
