"""Every buf.validate rule of every ProductService request, over real gRPC: one request per
rule, generated from the descriptors, breaking only that rule, answered INVALID_ARGUMENT
naming the field (tests/integration/validation_cases.py builds them)."""

from __future__ import annotations

import pytest

from shop.common.v1 import common_pb2
from shop.product.v1 import product_pb2 as pb
from tests.integration.validation_cases import (
    Case,
    assert_cover_every_rule,
    assert_refused_naming_the_field,
    cases,
    rules_of_service,
)

pytestmark = pytest.mark.stack

SERVICE = pb.DESCRIPTOR.services_by_name["ProductService"]
USD = common_pb2.Money(currency_code="USD", units=5, nanos=500_000_000)

# One valid request per method, every field with rules set, so each rule is live and a
# case differs from a request the service accepts by one field.
VALID = {
    "GetProduct": pb.GetProductRequest(id="p-0001"),
    "ListProducts": pb.ListProductsRequest(
        page_size=10, page_token="tok", category="kitchen", min_price=USD, max_price=USD, sort=1
    ),
    "SearchProducts": pb.SearchProductsRequest(query="mug", page_size=10, page_token="tok"),
    "ListCategories": pb.ListCategoriesRequest(),
    "CreateProduct": pb.CreateProductRequest(
        sku="SKU-1",
        name="Mug",
        description="A mug",
        category="kitchen",
        price=USD,
        image_urls=["https://images.shopmesh.local/m.jpg"],
        stock=3,
    ),
    "UpdateProduct": pb.UpdateProductRequest(
        id="p-0001",
        name="Mug",
        description="A mug",
        category="kitchen",
        price=USD,
        stock=3,
        image_urls=["https://images.shopmesh.local/m.jpg"],
    ),
    "ReserveStock": pb.ReserveStockRequest(
        order_id="o-1", lines=[pb.StockLine(product_id="p-0001", quantity=1)]
    ),
    "ReleaseStock": pb.ReleaseStockRequest(order_id="o-1"),
}

RULES = rules_of_service(SERVICE)
CASES, MISSING = cases(RULES, VALID)


def test_every_rule_bearing_field_has_cases_for_all_its_rules():
    assert_cover_every_rule(SERVICE, VALID, RULES, CASES, MISSING)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(product_stub, case: Case):
    await assert_refused_naming_the_field(product_stub, case)
