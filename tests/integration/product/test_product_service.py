"""Product service over real gRPC, against the real PostgreSQL primary and replica.

The catalog (reads, pages, search, writes, validation) is here; stock reservations:
test_product_stock.py; health and errors: test_product_health.py; helpers: product_helpers.py.
"""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from sqlalchemy import text

from services.product.demo import CATALOG, demo_products
from shop.product.v1 import product_pb2 as pb
from stack import postgres
from tests.integration import demo_loader
from tests.integration.db_statements import WRITE, StatementLog
from tests.integration.product.product_helpers import code_of, new_product, primary_lsn, usd

pytestmark = pytest.mark.stack


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
