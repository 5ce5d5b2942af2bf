"""Test wiring shared by the services built on services.runtime.consuming (cart,
recommendation): a private event topic with its DLQ, and the service's ConsumingApp served
in-process (real grpclib server) with its consumer running."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from services.runtime.metrics import Metrics
from services.runtime.server import App, ServerConfig


@contextlib.contextmanager
def private_topic(bootstrap: str, prefix: str, partitions: int = 2) -> Iterator[str]:
    """A fresh `<prefix>.<random>.orders` and its `.dlq`, so a test's consumer group never
    competes with the stack's services; both deleted afterwards."""
    name = f"{prefix}.{uuid.uuid4().hex[:10]}.orders"
    names = [name, f"{name}.dlq"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        fut.result(timeout=20)
    try:
        yield name
    finally:
        for fut in admin.delete_topics(names).values():
            fut.exception(timeout=20)


@contextlib.asynccontextmanager
async def serving(resource: Any, name: str, **app_options: Any) -> AsyncIterator[App]:
    """`resource` (a ConsumingApp) behind a real server, its consumer running, as main.py
    serves it; `app_options` go to App (e.g. auth=)."""
    app = App(
        ServerConfig(name=name, health_interval_s=0.2), [resource.handlers()], [resource],
        metrics=Metrics(f"{name}-server"), log_calls=False, **app_options,
    )  # fmt: skip
    await app.start()
    task = asyncio.create_task(resource.consume())
    try:
        yield app
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.stop(drain_timeout=2)
