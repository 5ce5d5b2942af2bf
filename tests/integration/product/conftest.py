"""The product service in-process (real grpclib server, real primary + replica)."""

from __future__ import annotations

import pytest
from grpclib.client import Channel

from services.product.config import ProductConfig
from services.product.handlers import ProductHandlers
from services.product.main import MIGRATIONS
from services.product.repository import SqlProductUnitOfWork
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from shop.product.v1 import product_grpc
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
    app = App(
        ServerConfig(name="product-test", health_interval_s=0.2),
        [ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))],
        [db],
        metrics=metrics,
        log_calls=False,
    )
    await app.start()
    app.db = db  # type: ignore[attr-defined]
    yield app
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
