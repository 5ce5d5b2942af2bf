"""The user service in-process (real grpclib server, real primary + replica)."""

from __future__ import annotations

import pytest
from grpclib.client import Channel

from services.runtime.auth import RuntimeAuth
from services.runtime.db import Database
from services.runtime.metrics import Metrics
from services.runtime.migrations import migrate
from services.runtime.server import App, ServerConfig
from services.user.config import UserConfig
from services.user.handlers import UserHandlers
from services.user.main import MIGRATIONS
from services.user.passwords import Argon2Hasher
from services.user.repository import SqlUserUnitOfWork
from shop.user.v1 import user_grpc
from stack.callers import as_platform


@pytest.fixture(scope="session")
async def user_app(stack):
    stack.require("postgres-primary", "postgres-replica")
    config = UserConfig.from_env({})
    metrics = Metrics("user-test")
    db = Database(config.db, metrics, service="user-test")
    await db.open()
    await migrate(db.primary, MIGRATIONS)
    await db.close()
    # Cheap argon2 parameters keep the suite fast; production defaults are in passwords.py.
    hasher = Argon2Hasher(time_cost=1, memory_cost=1024)
    app = App(
        ServerConfig(name="user-test"),
        [UserHandlers(lambda: SqlUserUnitOfWork(db.unit_of_work()), hasher)],
        [db],
        metrics=metrics,
        auth=RuntimeAuth.from_env("user-test"),  # the hook serve() installs
        log_calls=False,
    )
    await app.start()
    app.db = db  # type: ignore[attr-defined]
    yield app
    await app.stop(drain_timeout=2)


@pytest.fixture(scope="session")
async def user_stub(stack, user_app):
    # As the platform: CheckCredentials as auth (its caller), the rest as the demo admin,
    # who may act for any user (ownership is tested in e2e). The token is the stack's.
    stack.require("auth")
    channel = as_platform(Channel("127.0.0.1", user_app.grpc_port))
    yield user_grpc.UserServiceStub(channel)
    channel.close()
