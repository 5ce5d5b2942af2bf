"""The order store being down is UNAVAILABLE (retryable) to callers, never INTERNAL: seen
in the reliability suite while FerretDB restarted (ServerSelectionTimeoutError)."""

from __future__ import annotations

import socket

import pytest
from grpclib.const import Status
from motor.motor_asyncio import AsyncIOMotorClient

from services.order.errors import OrderStoreUnavailableError
from services.order.repository import MongoOrders
from services.runtime.errors import to_grpc_error


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


async def test_an_unreachable_store_is_unavailable_not_internal() -> None:
    url = f"mongodb://127.0.0.1:{closed_port()}/"
    repo = MongoOrders(url, "order")
    repo.client = AsyncIOMotorClient(url, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
    try:
        with pytest.raises(OrderStoreUnavailableError) as caught:
            await repo.get("o-1")
        with pytest.raises(OrderStoreUnavailableError):
            await repo.list_by_user("u-1", 10, None)
    finally:
        repo.client.close()
    err, expected = to_grpc_error(caught.value, "trace")
    assert (err.status, expected) == (Status.UNAVAILABLE, True)  # type: ignore[attr-defined]
