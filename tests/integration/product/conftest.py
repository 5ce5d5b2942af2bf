"""The product service in-process (real grpclib server, real primary + replica), wired as
main.py wires it: catalog cache on, its change listener on the primary."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from grpclib.client import Channel

from services.product.config import ProductConfig
from services.product.main import MIGRATIONS, wire
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from shop.product.v1 import product_grpc, product_pb2
from stack import postgres
from tests.integration import demo_loader


@pytest.fixture(scope="session")
async def product_app(stack):
    stack.require("postgres-primary", "postgres-replica")
    config = ProductConfig.from_env({})
    metrics = Metrics("product-test")
    db = Database(config.db, metrics, service="product-test")
    await db.open()
    await migrate(db.primary, MIGRATIONS)
    await db.close()
    parts = wire(config, metrics, service="product-test")
    app = App(
        ServerConfig(name="product-test", health_interval_s=0.2),
        [parts.handlers],
        parts.resources,
        metrics=metrics,
        log_calls=False,
    )
    await app.start()
    app.db = parts.db  # type: ignore[attr-defined]
    app.parts = parts  # type: ignore[attr-defined]
    yield app
    await app.stop(drain_timeout=2)


@contextlib.asynccontextmanager
async def product_instance(name: str, **env: str) -> AsyncIterator[tuple[App, object]]:
    """Another product-service instance on its own port, database pools, cache and change
    listener (as a second process or worker would have), with PRODUCT_* overrides; yields
    (app, stub). The schema must be migrated (the product_app fixture does it)."""
    config = ProductConfig.from_env(env)
    metrics = Metrics(name)
    parts = wire(config, metrics, service=name)
    app = App(
        ServerConfig(name=name, health_interval_s=0.2), [parts.handlers], parts.resources,
        metrics=metrics, log_calls=False,
    )  # fmt: skip
    await app.start()
    app.parts = parts  # type: ignore[attr-defined]
    channel = Channel("127.0.0.1", app.grpc_port)
    try:
        yield app, product_grpc.ProductServiceStub(channel)
    finally:
        channel.close()
        await app.stop(drain_timeout=2)


@pytest.fixture(scope="session")
async def product_stub(product_app):
    channel = Channel("127.0.0.1", product_app.grpc_port)
    yield product_grpc.ProductServiceStub(channel)
    channel.close()


@pytest.fixture(scope="session")
async def demo_catalog(stack) -> str:
    """The demo catalog loaded by this session, as `make up` would (idempotent), so tests
    that read p-0001 or the demo categories need no earlier `make up`."""
    stack.require("postgres-primary", "postgres-replica")
    out = demo_loader.run("services.product.demo")
    await demo_loader.replica_caught_up("product")
    return out


@pytest.fixture
async def scratch_category(product_stub) -> AsyncIterator[str]:
    """A category of this test's own. At the end its products move to "test" and the empty
    category row goes, so runs do not grow the shared catalog's category list (the
    storefront shows every category; the API has no call to delete one)."""
    cat = f"scratch-{uuid.uuid4().hex[:8]}"
    yield cat
    reply = await product_stub.ListProducts(
        product_pb2.ListProductsRequest(category=cat, page_size=100)
    )
    for product in reply.products:
        await product_stub.UpdateProduct(
            product_pb2.UpdateProductRequest(id=product.id, category="test")
        )
    conn = await asyncpg.connect(postgres.dsn("product"))
    try:
        await conn.execute(
            "DELETE FROM categories c WHERE slug = $1 "
            "AND NOT EXISTS (SELECT 1 FROM products p WHERE p.category = c.slug)",
            cat,
        )
    finally:
        await conn.close()
