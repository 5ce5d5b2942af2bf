"""Product service over real gRPC, against the real PostgreSQL primary and replica."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid

import asyncpg
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from sqlalchemy import text

from services.product.demo import CATALOG, demo_products
from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as pb
from stack import postgres
from tests.integration import demo_loader
from tests.integration.db_statements import WRITE, StatementLog

pytestmark = pytest.mark.stack


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


# ------------------------------------------------------------------ catalog


async def test_create_then_get_reads_own_write_via_lsn_trailer(product_stub):
    product = await new_product(product_stub)
    async with product_stub.UpdateProduct.open() as stream:
        await stream.send_message(pb.UpdateProductRequest(id=product.id, name="Renamed"), end=True)
        await stream.recv_message()
        await stream.recv_trailing_metadata()
    lsn = stream.trailing_metadata["x-shop-lsn"]
    assert "/" in lsn
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": lsn}
    )
    assert got.product.name == "Renamed"
    assert got.product.price.units == 12 and got.product.price.nanos == 500_000_000


async def test_get_unknown_id_is_not_found(product_stub):
    assert await code_of(product_stub.GetProduct(pb.GetProductRequest(id="p-nope"))) is (
        Status.NOT_FOUND
    )
    assert (
        await code_of(product_stub.UpdateProduct(pb.UpdateProductRequest(id="p-nope", name="x")))
        is Status.NOT_FOUND
    )


async def test_catalog_reads_are_served_by_the_replica(product_app, product_stub, demo_catalog):
    await product_stub.ListCategories(pb.ListCategoriesRequest())  # warm the pool
    db = product_app.db
    # The read must reach the database: drop what the catalog cache holds. A refill reads
    # with the cache's LSN fence, so after a recent product write (any process) the replica
    # may first be asked whether it replayed it: "replica_caught_up", still the replica.
    product_app.parts.cache.flush()
    counters = [db.metrics.db_reads.labels("replica", r) for r in ("replica", "replica_caught_up")]
    before = sum(c._value.get() for c in counters)
    await product_stub.GetProduct(pb.GetProductRequest(id="p-0001"))
    assert sum(c._value.get() for c in counters) == before + 1
    async with db.unit_of_work().read() as conn:  # the same engine the handler used
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is True


async def test_list_pages_with_opaque_cursor_filter_and_sort(product_stub, scratch_category):
    cat = scratch_category
    for price in (5, 1, 4, 2, 3):
        await new_product(product_stub, category=cat, price=usd(price))
    seen: list[int] = []
    token = ""
    for _ in range(3):
        reply = await product_stub.ListProducts(
            pb.ListProductsRequest(
                category=cat, page_size=2, page_token=token, sort=pb.PRODUCT_SORT_PRICE_DESC
            ),
            metadata={"x-shop-lsn": "FFFFFFFF/0"},  # far future: forces the primary
        )
        seen += [p.price.units for p in reply.products]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert token == ""
    filtered = await product_stub.ListProducts(
        pb.ListProductsRequest(
            category=cat, min_price=usd(2), max_price=usd(4), sort=pb.PRODUCT_SORT_PRICE_ASC
        ),
        metadata={"x-shop-lsn": "FFFFFFFF/0"},
    )
    assert [p.price.units for p in filtered.products] == [2, 3, 4]


async def test_bad_page_token_is_invalid_argument(product_stub):
    with pytest.raises(GRPCError) as err:
        await product_stub.ListProducts(pb.ListProductsRequest(page_token="not-base64!!"))
    assert err.value.status is Status.INVALID_ARGUMENT
    assert err.value.message.startswith("page_token:")
    other = base64.urlsafe_b64encode(b'{"f":"x","k":["a","b"]}').decode()
    assert (
        await code_of(product_stub.ListProducts(pb.ListProductsRequest(page_token=other)))
        is Status.INVALID_ARGUMENT
    )


async def test_full_text_search_ranks_name_matches(product_stub):
    word = "zyx" + uuid.uuid4().hex[:6]
    hit = await new_product(product_stub, name=f"Lantern {word}")
    await new_product(product_stub, description=f"goes well with a {word}")
    await asyncio.sleep(0.05)
    reply = await product_stub.SearchProducts(
        pb.SearchProductsRequest(query=word), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert len(reply.products) == 2
    assert reply.products[0].id == hit.id


async def test_demo_catalog_categories_have_counts(product_stub, demo_catalog):
    reply = await product_stub.ListCategories(
        pb.ListCategoriesRequest(), metadata={"x-shop-lsn": await primary_lsn()}
    )
    counts = {c.slug: c.product_count for c in reply.categories}
    assert counts.get("kitchen", 0) >= 10 and counts.get("books", 0) >= 10


async def test_demo_loader_twice_loads_the_catalog_once(product_stub, demo_catalog):
    """`make up` runs the loader on every start: the catalog is there (>= 50 products in
    several categories) and a second run touches no row."""
    ids = ", ".join(f"'{pid}'" for pid, _ in demo_products())
    cats = ", ".join(f"'{c}'" for c in CATALOG)
    queries = (
        f"SELECT id, xmin::text, sku, name, category, price_units, price_nanos, stock, "
        f"updated_at FROM products WHERE id IN ({ids}) ORDER BY id",
        f"SELECT slug, xmin::text FROM categories WHERE slug IN ({cats}) ORDER BY slug",
        "SELECT count(*) FROM products",
    )
    demo_loader.run("services.product.demo")  # at least once before the snapshot
    before = await demo_loader.fingerprint(postgres.dsn("product"), *queries)
    again = demo_loader.run("services.product.demo")
    assert "0 products added" in again
    assert await demo_loader.fingerprint(postgres.dsn("product"), *queries) == before

    products, categories, _ = before
    assert len(products) == len(demo_products()) >= 50
    per_category = {c: sum(1 for p in products if p[4] == c) for c in CATALOG}
    assert len(categories) == len(CATALOG) >= 3 and min(per_category.values()) >= 5
    lsn = {"x-shop-lsn": await primary_lsn()}
    reply = await product_stub.ListCategories(pb.ListCategoriesRequest(), metadata=lsn)
    served = {c.slug: c.product_count for c in reply.categories}
    assert all(served.get(c, 0) >= n for c, n in per_category.items())
    first_id, first = demo_products()[0]
    got = await product_stub.GetProduct(pb.GetProductRequest(id=first_id), metadata=lsn)
    assert (got.product.name, got.product.category) == (first.name, first.category)


async def test_duplicate_sku_is_already_exists(product_stub):
    product = await new_product(product_stub)
    req = pb.CreateProductRequest(
        sku=product.sku, name="dup", category="dup", price=usd(1), stock=1
    )
    assert await code_of(product_stub.CreateProduct(req)) is Status.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetProductRequest(id="bad id"), "id"),
        (pb.ListProductsRequest(page_size=101), "page_size"),
        (pb.ListProductsRequest(sort=42), "sort"),
        (pb.SearchProductsRequest(query=""), "query"),
        (pb.CreateProductRequest(sku="S", name="n", category="c", stock=1), "price"),
        (
            pb.CreateProductRequest(
                sku="S", name="n", category="c", price=usd(1), image_urls=["::nope"]
            ),
            "image_urls[0]",
        ),
        (pb.ReserveStockRequest(order_id="o-1"), "lines"),
        (
            pb.ReserveStockRequest(
                order_id="o-1", lines=[pb.StockLine(product_id="p-0001", quantity=0)]
            ),
            "lines[0].quantity",
        ),
        (pb.UpdateProductRequest(id="p-0001", stock=-1), "stock"),
    ],
)
async def test_validation_over_grpc_names_the_field(product_stub, request_, field):
    method = {
        "GetProductRequest": product_stub.GetProduct,
        "ListProductsRequest": product_stub.ListProducts,
        "SearchProductsRequest": product_stub.SearchProducts,
        "CreateProductRequest": product_stub.CreateProduct,
        "ReserveStockRequest": product_stub.ReserveStock,
        "UpdateProductRequest": product_stub.UpdateProduct,
    }[type(request_).__name__]
    with pytest.raises(GRPCError) as err:
        await method(request_)
    assert err.value.status is Status.INVALID_ARGUMENT
    assert err.value.message.startswith(f"{field}: ")


async def test_negative_price_is_invalid_argument(product_stub):
    req = pb.CreateProductRequest(sku="S-neg", name="n", category="c", price=usd(-1), stock=1)
    with pytest.raises(GRPCError) as err:
        await product_stub.CreateProduct(req)
    assert err.value.status is Status.INVALID_ARGUMENT and "price" in err.value.message


async def test_writes_never_go_to_the_replica(product_app, product_stub, scratch_category):
    """Every statement of Create/Update/Reserve runs on the primary pool, none on the
    replica's (a replica pool pointed at a writable server would not fail by itself)."""
    tag = uuid.uuid4().hex[:10]
    with StatementLog(product_app.db) as sql:
        await product_stub.ListCategories(
            pb.ListCategoriesRequest(), metadata={"x-request-id": f"read-{tag}"}
        )  # the control: a read is seen on the replica pool
        created = await product_stub.CreateProduct(
            pb.CreateProductRequest(
                sku=f"W-{tag}", name="Write test", category=scratch_category, price=usd(3), stock=5
            ),
            metadata={"x-request-id": f"create-{tag}"},
        )
        pid = created.product.id
        await product_stub.UpdateProduct(
            pb.UpdateProductRequest(id=pid, name="Write test 2", stock=6),
            metadata={"x-request-id": f"update-{tag}"},
        )
        await product_stub.ReserveStock(
            pb.ReserveStockRequest(
                order_id=f"o-{tag}", lines=[pb.StockLine(product_id=pid, quantity=2)]
            ),
            metadata={"x-request-id": f"reserve-{tag}"},
        )
    assert sql.of(f"read-{tag}", "replica")
    for call in ("create", "update", "reserve"):
        assert sql.of(f"{call}-{tag}", "replica") == [], call
        assert any(WRITE.search(s) for s in sql.of(f"{call}-{tag}", "primary")), call


# ------------------------------------------------------------------ stock


async def test_fifty_concurrent_reservations_for_ten_units_exactly_ten_succeed(product_stub):
    product = await new_product(product_stub, stock=10)

    async def reserve(i: int) -> Status:
        try:
            await product_stub.ReserveStock(
                pb.ReserveStockRequest(
                    order_id=f"o-{uuid.uuid4().hex}",
                    lines=[pb.StockLine(product_id=product.id, quantity=1)],
                )
            )
            return Status.OK
        except GRPCError as exc:
            return exc.status

    results = await asyncio.gather(*(reserve(i) for i in range(50)))
    assert results.count(Status.OK) == 10
    assert results.count(Status.FAILED_PRECONDITION) == 40
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 0


async def test_concurrent_multi_line_reservations_in_any_line_order_never_deadlock(product_stub):
    """Forty orders for the same three products, each listing them in its own order: every
    reservation locks them in product-id order, so none is aborted as a deadlock."""
    products = [await new_product(product_stub, stock=100) for _ in range(3)]
    rng = random.Random(7)

    async def reserve(i: int) -> Status:
        lines = [pb.StockLine(product_id=p.id, quantity=1) for p in products]
        rng.shuffle(lines)
        try:
            await product_stub.ReserveStock(
                pb.ReserveStockRequest(order_id=f"o-{uuid.uuid4().hex}", lines=lines)
            )
            return Status.OK
        except GRPCError as exc:
            return exc.status

    results = await asyncio.gather(*(reserve(i) for i in range(40)))
    assert results == [Status.OK] * 40
    for p in products:
        got = await product_stub.GetProduct(
            pb.GetProductRequest(id=p.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
        )
        assert got.product.stock == 60


async def test_reserve_is_atomic_across_lines_and_returns_catalog_prices(product_stub):
    a = await new_product(product_stub, stock=5, price=usd(3, 250_000_000))
    b = await new_product(product_stub, stock=1)
    order = f"o-{uuid.uuid4().hex}"
    too_much = pb.ReserveStockRequest(
        order_id=order,
        lines=[
            pb.StockLine(product_id=a.id, quantity=2),
            pb.StockLine(product_id=b.id, quantity=2),
        ],
    )
    assert await code_of(product_stub.ReserveStock(too_much)) is Status.FAILED_PRECONDITION
    after = await product_stub.GetProduct(
        pb.GetProductRequest(id=a.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert after.product.stock == 5  # the first line was rolled back with the second
    ok = pb.ReserveStockRequest(
        order_id=order,
        lines=[
            pb.StockLine(product_id=a.id, quantity=2),
            pb.StockLine(product_id=b.id, quantity=1),
        ],
    )
    reply = await product_stub.ReserveStock(ok)
    prices = {ln.product_id: (ln.unit_price.units, ln.unit_price.nanos) for ln in reply.lines}
    assert prices[a.id] == (3, 250_000_000)
    assert not reply.replayed


async def test_repeated_reserve_for_same_order_changes_nothing(product_stub):
    product = await new_product(product_stub, stock=10)
    req = pb.ReserveStockRequest(
        order_id=f"o-{uuid.uuid4().hex}", lines=[pb.StockLine(product_id=product.id, quantity=3)]
    )
    first = await product_stub.ReserveStock(req)
    again = await asyncio.gather(*(product_stub.ReserveStock(req) for _ in range(5)))
    assert not first.replayed and all(r.replayed for r in again)
    assert all(list(r.lines) == list(first.lines) for r in again)
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 7


async def test_release_gives_stock_back_once_and_blocks_late_reserve(product_stub):
    product = await new_product(product_stub, stock=4)
    order = f"o-{uuid.uuid4().hex}"
    req = pb.ReserveStockRequest(
        order_id=order, lines=[pb.StockLine(product_id=product.id, quantity=4)]
    )
    await product_stub.ReserveStock(req)
    rel = pb.ReleaseStockRequest(order_id=order)
    assert (await product_stub.ReleaseStock(rel)).released is True
    assert (await product_stub.ReleaseStock(rel)).released is False
    got = await product_stub.GetProduct(
        pb.GetProductRequest(id=product.id), metadata={"x-shop-lsn": "FFFFFFFF/0"}
    )
    assert got.product.stock == 4
    assert await code_of(product_stub.ReserveStock(req)) is Status.FAILED_PRECONDITION
    # release before reserve (saga gave up early): the late reserve takes nothing
    early = f"o-{uuid.uuid4().hex}"
    assert (
        await product_stub.ReleaseStock(pb.ReleaseStockRequest(order_id=early))
    ).released is False
    late = pb.ReserveStockRequest(
        order_id=early, lines=[pb.StockLine(product_id=product.id, quantity=1)]
    )
    assert await code_of(product_stub.ReserveStock(late)) is Status.FAILED_PRECONDITION


async def test_reserve_unknown_product_is_not_found(product_stub):
    req = pb.ReserveStockRequest(
        order_id=f"o-{uuid.uuid4().hex}", lines=[pb.StockLine(product_id="p-missing", quantity=1)]
    )
    assert await code_of(product_stub.ReserveStock(req)) is Status.NOT_FOUND


async def test_health_serving_with_real_db(product_app, product_stub):
    from grpclib.client import Channel

    channel = Channel("127.0.0.1", product_app.grpc_port)
    try:
        health = HealthStub(channel)
        reply = await health.Check(HealthCheckRequest(service="shop.product.v1.ProductService"))
        assert reply.status == HealthCheckResponse.SERVING
        reply = await health.Check(HealthCheckRequest(service="postgres/product:replica"))
        assert reply.status == HealthCheckResponse.SERVING
    finally:
        channel.close()


async def test_db_down_health_not_serving_and_internal_error_hides_details(stack):
    """A product server whose database is unreachable (nothing listens on its port)."""
    from grpclib.client import Channel

    from services.product.config import ProductConfig
    from services.product.handlers import ProductHandlers
    from services.product.repository import SqlProductUnitOfWork
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics
    from services.runtime.server import App, ServerConfig
    from shop.product.v1 import product_grpc

    env = {"PRODUCT_DB_PRIMARY_PORT": "5499", "PRODUCT_DB_REPLICA_PORT": "5498"}
    config = ProductConfig.from_env(env)
    metrics = Metrics("product-down")
    db = Database(config.db, metrics, service="product-down")
    app = App(
        ServerConfig(name="product-down"),
        [ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))],
        [db],
        metrics=metrics,
        log_calls=False,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.NOT_SERVING
        with pytest.raises(GRPCError) as err:
            await product_grpc.ProductServiceStub(channel).GetProduct(
                pb.GetProductRequest(id="p-0001"), metadata={"x-request-id": "trace-db-down"}
            )
        assert err.value.status is Status.INTERNAL
        assert "trace-db-down" in err.value.message
        assert "5499" not in err.value.message and "asyncpg" not in err.value.message
    finally:
        channel.close()
        await app.stop(drain_timeout=1)


async def test_unexpected_db_error_is_logged_with_trace_while_client_gets_bare_internal(
    product_app, product_stub, stack
):
    """A real unexpected failure: the products table is locked by another session, so the
    UPDATE hits this server's statement timeout (asyncpg QueryCanceledError). The service log
    has an error line with the trace id and the stack; the client gets only INTERNAL."""
    from grpclib.client import Channel

    from services.product.config import ProductConfig
    from services.product.handlers import ProductHandlers
    from services.product.repository import SqlProductUnitOfWork
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics
    from services.runtime.server import App, ServerConfig
    from shop.product.v1 import product_grpc
    from tests.integration.log_lines import JsonLines

    product = await new_product(product_stub)
    config = ProductConfig.from_env({"PRODUCT_DB_STATEMENT_TIMEOUT_MS": "300"})
    metrics = Metrics("product-timeout")
    db = Database(config.db, metrics, service="product-timeout")
    app = App(
        ServerConfig(name="product-timeout"),
        [ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))],
        [db],
        metrics=metrics,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    locker = await asyncpg.connect(stack.pg_admin_dsn("product"))
    trace = f"trace-{uuid.uuid4().hex[:12]}"
    try:
        with JsonLines("product-timeout") as logs:
            async with locker.transaction():
                await locker.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(GRPCError) as err:
                    await product_grpc.ProductServiceStub(channel).UpdateProduct(
                        pb.UpdateProductRequest(id=product.id, name="never"),
                        metadata={"x-request-id": trace},
                    )
    finally:
        await locker.close()
        channel.close()
        await app.stop(drain_timeout=1)
    assert err.value.status is Status.INTERNAL
    assert err.value.message == f"internal error (trace id {trace})"
    assert err.value.details is None
    errors = [
        line for line in logs.parsed() if line["level"] == "error" and line.get("trace_id") == trace
    ]
    assert [line["msg"] for line in errors] == ["unexpected error"]
    assert errors[0]["service"] == "product-timeout"
    assert "QueryCanceledError" in errors[0]["exc"] and "Traceback" in errors[0]["exc"]
    access = [
        line for line in logs.parsed() if line["msg"] == "rpc" and line.get("trace_id") == trace
    ]
    assert [(a["method"], a["code"]) for a in access] == [
        ("/shop.product.v1.ProductService/UpdateProduct", "INTERNAL")
    ]
