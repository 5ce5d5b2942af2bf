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
