"""Helpers of the product service tests: money, a new product in the shared test category,
the primary's current LSN, the status a call ends with.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as pb
from stack import postgres


def usd(units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


async def new_product(stub, stock: int = 10, category: str | None = None, **kw) -> pb.Product:
    tag = uuid.uuid4().hex[:10]
    reply = await stub.CreateProduct(
        pb.CreateProductRequest(
            sku=f"T-{tag}",
            name=kw.pop("name", f"Test product {tag}"),
            description=kw.pop("description", "integration test product"),
            category=category or "test",
            price=kw.pop("price", usd(12, 500_000_000)),
            image_urls=["https://images.shopmesh.local/t.jpg"],
            stock=stock,
        )
    )
    return reply.product


async def primary_lsn() -> str:
    """The primary's WAL position now: as x-shop-lsn, a read sees everything committed."""
    conn = await asyncpg.connect(postgres.dsn("product"))
    try:
        return await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()


async def code_of(coro) -> Status:
    with pytest.raises(GRPCError) as err:
        await coro
    return err.value.status
