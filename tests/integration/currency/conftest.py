"""The currency service in-process (real grpclib server, real PostgreSQL primary), wired as
main.py wires it, with the demo rates loaded as `make up` loads them."""

from __future__ import annotations

import pytest
from grpclib.client import Channel

from services.currency.config import CurrencyConfig
from services.currency.main import MIGRATIONS, wire
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from shop.currency.v1 import currency_grpc
from stack import postgres
from tests.integration import demo_loader


@pytest.fixture(scope="session")
async def currency_app(stack):
    stack.require("postgres-primary")
    postgres._bootstrap_primary()  # a stack started before the manifest named `currency`
    config = CurrencyConfig.from_env({})
    metrics = Metrics("currency-test")
    db = Database(config.db, metrics, service="currency-test")
    await db.open()
    await migrate(db.primary, MIGRATIONS)
    await db.close()
    demo_loader.run("services.currency.demo")
    handlers, resources = wire(config, metrics, service="currency-test")
    app = App(
        ServerConfig(name="currency-test", health_interval_s=0.2),
        [handlers],
        resources,
        metrics=metrics,
        log_calls=False,
    )
    await app.start()
    yield app
    await app.stop(drain_timeout=2)


@pytest.fixture(scope="session")
async def currency_stub(currency_app):
    channel = Channel("127.0.0.1", currency_app.grpc_port)
    yield currency_grpc.CurrencyServiceStub(channel)
    channel.close()
