"""The shipping service in-process (real grpclib server, real PostgreSQL primary), wired as
main.py wires it, converting through the stack's currency service."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel

from services.runtime.auth import ServiceIdentity, register_process_identity
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from services.shipping.config import ShippingConfig
from services.shipping.main import MIGRATIONS, wire
from shop.shipping.v1 import shipping_grpc
from stack import postgres


@pytest.fixture(scope="module")
def infra(stack):
    stack.require("postgres-primary", "currency")
    postgres._bootstrap_primary()  # a stack started before the manifest named `shipping`
    register_process_identity(ServiceIdentity.from_env("shipping", os.environ))
    return stack


@contextlib.asynccontextmanager
async def shipping_app(name: str, **env: str) -> AsyncIterator[shipping_grpc.ShippingServiceStub]:
    config = ShippingConfig.from_env({**os.environ, **env})
    handlers, resources, _tasks = wire(config, Metrics(name), service=name)
    app = App(
        ServerConfig(name=name, health_interval_s=0.2), [handlers], resources,
        metrics=Metrics(f"{name}-server"), log_calls=False,
    )  # fmt: skip
    await app.start()
    await migrate(resources[0].primary, MIGRATIONS)  # type: ignore[attr-defined]
    channel = Channel("127.0.0.1", app.grpc_port)
    try:
        yield shipping_grpc.ShippingServiceStub(channel)
    finally:
        channel.close()
        await app.stop(drain_timeout=2)


@pytest.fixture(scope="module")
async def shipping(infra) -> AsyncIterator[shipping_grpc.ShippingServiceStub]:
    async with shipping_app("shipping-test") as stub:
        yield stub
