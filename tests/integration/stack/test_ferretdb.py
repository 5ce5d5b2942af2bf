"""FerretDB (MongoDB wire protocol) started by the stack runner."""

import uuid

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

pytestmark = pytest.mark.stack


async def test_motor_insert_then_find(stack):
    stack.require("ferretdb")
    client = AsyncIOMotorClient(stack.mongo_url(), serverSelectionTimeoutMS=5000)
    coll = client["stack_test"][f"probe_{uuid.uuid4().hex[:8]}"]
    try:
        doc_id = uuid.uuid4().hex
        await coll.insert_one({"_id": doc_id, "items": [{"sku": "A", "qty": 2}], "total": 42})
        found = await coll.find_one({"_id": doc_id})
        assert found == {"_id": doc_id, "items": [{"sku": "A", "qty": 2}], "total": 42}
        assert await coll.count_documents({"total": {"$gt": 41}}) == 1
    finally:
        await coll.drop()
        client.close()


def _gin_twins(schema: str) -> dict[str, set[str]]:
    """table -> fields with a GIN twin, in one FerretDB database (= PostgreSQL schema)."""
    from stack import ferretdb, postgres

    rows = postgres.psql(
        "SELECT tablename || E'\\x1f' || indexdef FROM pg_indexes "
        f"WHERE schemaname = '{schema}' AND indexdef LIKE '%USING gin%'",
        ferretdb.DATABASE,
    )
    out: dict[str, set[str]] = {}
    for line in rows.splitlines():
        table, indexdef = line.split("\x1f")
        field = indexdef.split("_jsonb -> '", 1)[1].split("'", 1)[0]
        out.setdefault(table, set()).add(field)
    return out


async def test_equality_lookups_use_gin_twins_of_ferretdb_indexes(stack):
    """FerretDB v1 filters `_jsonb->'f' @> value`, which its btree indexes cannot serve;
    twin_indexes() adds GIN twins that can, without changing any answer."""
    from stack import ferretdb, postgres

    stack.require("ferretdb")
    db = f"twin_test_{uuid.uuid4().hex[:8]}"
    client = AsyncIOMotorClient(stack.mongo_url(), serverSelectionTimeoutMS=5000)
    coll = client[db]["things"]
    try:
        await coll.create_index([("k", 1), ("n", 1)], name="k_n")
        docs = [{"_id": f"id-{i}", "k": f"v{i % 50}", "n": i} for i in range(2000)]
        await coll.insert_many([*docs, {"_id": "arr", "k": ["v7", "zz"], "n": -1}])
        assert _gin_twins(db) == {}

        statements = ferretdb.twin_indexes([db])
        assert len(statements) == 2  # _id (FerretDB's own index) and k (the leading field)
        (table,) = _gin_twins(db)
        assert _gin_twins(db) == {table: {"_id", "k"}}
        assert ferretdb.twin_indexes([db]) == statements  # idempotent
        assert _gin_twins(db) == {table: {"_id", "k"}}

        postgres.psql(f'ANALYZE "{db}"."{table}"', ferretdb.DATABASE)
        plan = postgres.psql(
            f"""EXPLAIN SELECT _jsonb FROM "{db}"."{table}" WHERE _jsonb->'_id' @> '"id-1234"'""",
            ferretdb.DATABASE,
        )
        assert "Index Scan" in plan and "_eq" in plan, plan
        assert "Seq Scan" not in plan, plan

        # Same answers, Mongo's array semantics included (`k: "v7"` matches ["v7", "zz"]).
        found = sorted([d["_id"] async for d in coll.find({"k": "v7"})])
        assert found == sorted([f"id-{i}" for i in range(2000) if i % 50 == 7] + ["arr"])
        assert (await coll.find_one({"_id": "id-1234"}))["n"] == 1234
        await coll.update_one({"_id": "id-1234"}, {"$set": {"k": "moved"}})
        assert [d["_id"] async for d in coll.find({"k": "moved"})] == ["id-1234"]
    finally:
        await client.drop_database(db)
        client.close()


def test_the_stack_twins_the_order_service_indexes(stack):
    """`make up` runs twin_indexes after the order service made its collections."""
    stack.require("order")
    by_field = {f for fields in _gin_twins("order").values() for f in fields}
    assert {"_id", "user_id", "outbox", "release_pending"} <= by_field, by_field
