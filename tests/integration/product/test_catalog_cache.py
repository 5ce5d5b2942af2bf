"""The catalog cache across real product-service instances (in-process gRPC servers, each
with its own pools, cache and change listener) on the real primary + replica.

Instance A is the session's product_app; instance B is started per test with a long TTL
(600 s), so only a change notice (or the loss of the listener) can explain B answering
with a new value."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as pb
from stack import postgres
from tests.integration import demo_loader
from tests.integration.product.conftest import product_instance

pytestmark = pytest.mark.stack

LONG_TTL = {"PRODUCT_CACHE_TTL_S": "600"}


def usd(units: int) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units)


SHARED_CATEGORY = "cache-test"  # scratch products share one category


async def new_product(stub, category: str | None = None, price: int = 10, stock: int = 10):
    tag = uuid.uuid4().hex[:10]
    reply = await stub.CreateProduct(
        pb.CreateProductRequest(
            sku=f"C-{tag}", name=f"Cache test {tag}", category=category or SHARED_CATEGORY,
            price=usd(price), stock=stock,
        )
    )  # fmt: skip
    return reply.product


async def eventually(read, check, what: str, limit_s: float = 10.0):
    """Call `read` until `check(result)`; fails naming `what` after limit_s."""
    last = None
    for _ in range(int(limit_s / 0.05)):
        last = await read()
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {limit_s}s: {what} (last: {last})")


async def until(predicate, what: str, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit_s}s: {what}")


def db_reads(app) -> float:
    return sum(s.value for m in app.parts.db.metrics.db_reads.collect() for s in m.samples
               if s.name == "db_reads_total")  # fmt: skip


async def settled(app) -> None:
    """The instance's listener is up and has fenced every notice it got so far."""
    cache = app.parts.cache
    await until(lambda: cache.serving and not cache.pending, "cache serving, no pending notice")


async def stock_of(stub, pid: str, **kw) -> int:
    return (await stub.GetProduct(pb.GetProductRequest(id=pid), **kw)).product.stock


async def test_second_read_is_served_by_the_cache_without_a_database_read(product_app):
    async with product_instance("product-cache-b", **LONG_TTL) as (b, stub):
        await settled(b)
        product = await new_product(stub)
        await demo_loader.replica_caught_up("product")
        await stub.GetProduct(pb.GetProductRequest(id=product.id))
        reads, hits = db_reads(b), b.parts.cache.hits
        for _ in range(5):
            got = await stub.GetProduct(pb.GetProductRequest(id=product.id))
            assert got.product == product
        assert db_reads(b) == reads
        assert b.parts.cache.hits == hits + 5


async def test_a_write_on_instance_a_drops_the_entry_on_instance_b(product_app, product_stub):
    product = await new_product(product_stub, stock=10)
    async with product_instance("product-cache-b", **LONG_TTL) as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")
        assert await stock_of(b_stub, product.id) == 10
        assert await stock_of(b_stub, product.id) == 10  # cached now
        notices = b.parts.cache.notices
        await product_stub.UpdateProduct(pb.UpdateProductRequest(id=product.id, stock=3))
        await eventually(lambda: stock_of(b_stub, product.id), lambda s: s == 3,
                         "instance B shows A's stock change")  # fmt: skip
        assert b.parts.cache.notices > notices
        # A reservation (stock taken on the primary) reaches B the same way.
        await product_stub.ReserveStock(
            pb.ReserveStockRequest(
                order_id=f"o-{uuid.uuid4().hex}",
                lines=[pb.StockLine(product_id=product.id, quantity=2)],
            )
        )
        await eventually(lambda: stock_of(b_stub, product.id), lambda s: s == 1,
                         "instance B shows the reservation")  # fmt: skip


async def test_read_your_writes_with_the_cache_on(product_app, product_stub, stack):
    """B holds a product; a write B never hears of (triggers off for that session, so no
    notice) is still read by a caller that sends the write's LSN: the entry is older."""
    product = await new_product(product_stub)
    async with product_instance("product-cache-b", **LONG_TTL) as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")
        for _ in range(2):
            got = await b_stub.GetProduct(pb.GetProductRequest(id=product.id))
            assert got.product.name == product.name
        admin = await asyncpg.connect(stack.pg_admin_dsn("product"))
        try:
            await admin.execute("SET session_replication_role = replica")  # no notice
            await admin.execute("UPDATE products SET name = 'Silent' WHERE id = $1", product.id)
            lsn = await admin.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        finally:
            await admin.close()
        notices = b.parts.cache.notices
        got = await b_stub.GetProduct(
            pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": lsn}
        )
        assert got.product.name == "Silent"
        assert b.parts.cache.notices == notices  # B learnt it from the LSN alone


async def test_after_a_notice_no_refill_from_a_replica_that_lacks_the_write(
    product_app, product_stub, stack
):
    """Replay paused: once B got A's notice, B's refill waits for the notice's fence, which
    the replica lacks, so it reads the primary instead of caching the stale replica row.
    A caller echoing A's LSN trailer reads the write too."""
    product = await new_product(product_stub)
    async with product_instance("product-cache-b", **LONG_TTL) as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")
        assert (await b_stub.GetProduct(pb.GetProductRequest(id=product.id))).product.name
        admin = await asyncpg.connect(stack.pg_admin_dsn("product", replica=True))
        try:
            await admin.execute("SELECT pg_wal_replay_pause()")
            notices = b.parts.cache.notices
            async with product_stub.UpdateProduct.open() as stream:
                await stream.send_message(
                    pb.UpdateProductRequest(id=product.id, name="Fenced"), end=True
                )
                await stream.recv_message()
                await stream.recv_trailing_metadata()
            lsn = stream.trailing_metadata["x-shop-lsn"]
            await until(lambda: b.parts.cache.notices > notices, "B got A's notice")
            await settled(b)
            for _ in range(3):  # no LSN: the new name, from the primary, then the cache
                got = await b_stub.GetProduct(pb.GetProductRequest(id=product.id))
                assert got.product.name == "Fenced"
            got = await b_stub.GetProduct(
                pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": lsn}
            )
            assert got.product.name == "Fenced"
        finally:
            await admin.execute("SELECT pg_wal_replay_resume()")
            await admin.close()


async def test_killed_listener_connection_never_leaves_a_stale_answer(
    product_app, product_stub, stack
):
    """pg_terminate_backend on B's listener: B flushes and reads through until it LISTENs
    again. A write committed meanwhile (its notice is lost) must not be hidden by B's
    cache, neither during the gap nor after B is back."""
    product = await new_product(product_stub, stock=7)
    async with product_instance("product-cache-b", **LONG_TTL) as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")
        assert await stock_of(b_stub, product.id) == 7
        assert await stock_of(b_stub, product.id) == 7  # cached
        listener = b.parts.listener
        listener.retry_s = listener._delay = 2.0  # a wide gap to write in
        admin = await asyncpg.connect(stack.pg_admin_dsn("product"))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
            await until(lambda: listener.losses == 1, "B saw its listener die")
            assert not b.parts.cache.serving
            await admin.execute("UPDATE products SET stock = 4 WHERE id = $1", product.id)
        finally:
            await admin.close()
        assert not listener.listening, "B listened again before the write: nothing proven"
        await demo_loader.replica_caught_up("product")
        bypassed = b.parts.cache.bypassed
        assert await stock_of(b_stub, product.id) == 4
        assert b.parts.cache.bypassed == bypassed + 1
        await until(lambda: listener.listening, "B listening again", limit_s=15)
        assert await stock_of(b_stub, product.id) == 4
        assert await stock_of(b_stub, product.id) == 4


async def test_stock_is_never_older_than_the_ttl_even_if_a_notice_is_lost(
    product_app, product_stub, stack
):
    """A write that sends no notice (triggers off for that session): B keeps its entry, but
    only until the TTL (1 s here) after the read that filled it."""
    product = await new_product(product_stub, stock=9)
    async with product_instance("product-cache-ttl", PRODUCT_CACHE_TTL_S="1") as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")
        assert await stock_of(b_stub, product.id) == 9
        filled = asyncio.get_running_loop().time()
        admin = await asyncpg.connect(stack.pg_admin_dsn("product"))
        try:
            await admin.execute("SET session_replication_role = replica")  # no triggers
            await admin.execute("UPDATE products SET stock = 2 WHERE id = $1", product.id)
        finally:
            await admin.close()
        await demo_loader.replica_caught_up("product")
        if asyncio.get_running_loop().time() - filled < 0.8:
            # still within the TTL: the silent write is not visible (this is what the TTL
            # bounds; it also proves no notice was sent)
            assert await stock_of(b_stub, product.id) == 9
        await asyncio.sleep(max(0.0, filled + 1.05 - asyncio.get_running_loop().time()))
        assert await stock_of(b_stub, product.id) == 2
        assert b.parts.cache.expired >= 1


async def test_list_pages_and_filters_from_the_cache_stay_correct(
    product_app, product_stub, scratch_category
):
    cat = scratch_category
    created = {}
    for price in (5, 1, 4, 2, 3):
        created[price] = await new_product(product_stub, category=cat, price=price)
    async with product_instance("product-cache-b", **LONG_TTL) as (b, b_stub):
        await settled(b)
        await demo_loader.replica_caught_up("product")

        async def pages() -> list[list[int]]:
            out, token = [], ""
            while True:
                reply = await b_stub.ListProducts(
                    pb.ListProductsRequest(category=cat, page_size=2, page_token=token,
                                           sort=pb.PRODUCT_SORT_PRICE_DESC)
                )  # fmt: skip
                out.append([p.price.units for p in reply.products])
                token = reply.next_page_token
                if not token:
                    return out

        async def filtered() -> list[int]:
            reply = await b_stub.ListProducts(
                pb.ListProductsRequest(category=cat, min_price=usd(2), max_price=usd(4),
                                       sort=pb.PRODUCT_SORT_PRICE_ASC)
            )  # fmt: skip
            return [p.price.units for p in reply.products]

        assert await pages() == [[5, 4], [3, 2], [1]]
        assert await filtered() == [2, 3, 4]
        reads, hits = db_reads(b), b.parts.cache.hits
        assert await pages() == [[5, 4], [3, 2], [1]]
        assert await filtered() == [2, 3, 4]
        assert db_reads(b) == reads and b.parts.cache.hits == hits + 4
        # A moves a product (price 3 -> 6): pages and filters on B follow.
        await product_stub.UpdateProduct(pb.UpdateProductRequest(id=created[3].id, price=usd(6)))
        await eventually(pages, lambda p: p == [[6, 5], [4, 2], [1]], "pages follow the move")
        assert await filtered() == [2, 4]
        # A stock change of one product: its page refills, the rest stays cached.
        await product_stub.UpdateProduct(pb.UpdateProductRequest(id=created[1].id, stock=0))
        await eventually(
            lambda: b_stub.ListProducts(
                pb.ListProductsRequest(category=cat, sort=pb.PRODUCT_SORT_PRICE_ASC)
            ),
            lambda r: [p.stock for p in r.products if p.id == created[1].id] == [0],
            "stock change shown in the list",
        )


async def test_two_instances_agree_with_the_database_after_a_bulk_write(
    product_app, product_stub, scratch_category
):
    """Two more instances cache the same page; one UPDATE of many rows from a plain
    connection (not a service) reaches both: they answer what the primary holds."""
    cat = scratch_category
    ids = [(await new_product(product_stub, category=cat, price=p)).id for p in (1, 2, 3, 4)]
    query = pb.ListProductsRequest(category=cat, page_size=20)
    async with (
        product_instance("product-cache-b", **LONG_TTL) as (b, b_stub),
        product_instance("product-cache-c", **LONG_TTL) as (c, c_stub),
    ):
        await settled(b)
        await settled(c)
        await demo_loader.replica_caught_up("product")
        for stub in (b_stub, c_stub):
            assert [p.stock for p in (await stub.ListProducts(query)).products] == [10] * 4
        conn = await asyncpg.connect(postgres.dsn("product"))
        try:
            await conn.execute(
                "UPDATE products SET stock = stock + length(id) WHERE id = ANY($1::text[])", ids
            )
            rows = await conn.fetch(
                "SELECT id, stock FROM products WHERE id = ANY($1::text[])", ids
            )
        finally:
            await conn.close()
        truth = {r["id"]: r["stock"] for r in rows}
        assert set(truth.values()) != {10}
        for stub in (b_stub, c_stub):
            await eventually(
                lambda stub=stub: stub.ListProducts(query),
                lambda r: {p.id: p.stock for p in r.products} == truth,
                "every cached stock matches the primary",
            )
            for pid in ids:
                assert await stock_of(stub, pid) == truth[pid]
