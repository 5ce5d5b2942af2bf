"""Every buf.validate rule kind used in schemas/ answers with the field path named."""

from __future__ import annotations

import pytest

from services.runtime.errors import InvalidArgument
from services.runtime.validation import validate, violations
from shop.common.v1 import common_pb2 as common
from shop.order.v1 import order_pb2 as order
from shop.product.v1 import product_pb2 as product
from shop.user.v1 import user_pb2 as user

USD = common.Money(currency_code="USD", units=5)
ADDRESS = common.Address(
    recipient_name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country_code="DE"
)


def create(**kw):
    base = dict(sku="SKU-1", name="Mug", category="kitchen", price=USD, stock=1)
    base.update(kw)
    return product.CreateProductRequest(**base)


CASES = [
    # (rule kind, message, field path, words in the description)
    ("string.min_len", create(name=""), "name", "at least 1"),
    ("string.max_len", create(name="x" * 201), "name", "at most 200"),
    ("string.pattern", create(sku="has space"), "sku", "regex"),
    (
        "string.email",
        user.RegisterUserRequest(email="not-an-email", password="long-enough", display_name="A"),
        "email",
        "email",
    ),
    # An https URL in the pattern's alphabet that is still no URI reference (bad escape).
    (
        "string.uri_ref (repeated items)",
        create(image_urls=["https://x/%zz"]),
        "image_urls[0]",
        "URI",
    ),
    ("int32.gte", create(stock=-1), "stock", "greater than or equal to 0"),
    ("int32.lte", product.ListProductsRequest(page_size=101), "page_size", "less than or equal"),
    (
        "int32 range in a repeated message",
        product.ReserveStockRequest(
            order_id="o-1", lines=[product.StockLine(product_id="p-1", quantity=0)]
        ),
        "lines[0].quantity",
        "greater than or equal to 1",
    ),
    ("enum.defined_only", product.ListProductsRequest(sort=99), "sort", "defined"),
    (
        "enum.in",
        order.UpdateOrderStatusRequest(id="o-1", status=order.ORDER_STATUS_PENDING),
        "status",
        "in",
    ),
    ("repeated.min_items", product.ReserveStockRequest(order_id="o-1"), "lines", "at least 1"),
    (
        "repeated.max_items",
        product.ReserveStockRequest(
            order_id="o-1",
            lines=[product.StockLine(product_id=f"p-{i}", quantity=1) for i in range(51)],
        ),
        "lines",
        "no more than 50",
    ),
    ("repeated.max_items (strings)", create(image_urls=["https://x/a"] * 11), "image_urls", "10"),
    ("required (message)", create(price=None), "price", "required"),
    (
        "nested message field",
        user.AddAddressRequest(
            user_id="u-1", address=common.Address(**{**_a, "country_code": "de"})
        )
        if (_a := {f.name: getattr(ADDRESS, f.name) for f in ADDRESS.DESCRIPTOR.fields})
        else None,
        "address.country_code",
        "regex",
    ),
    (
        "optional field, set",
        user.UpdateProfileRequest(id="u-1", phone="12345"),
        "phone",
        "regex",
    ),
    (
        "int32 range in a nested message",
        product.ListProductsRequest(min_price=common.Money(currency_code="USD", nanos=10**9)),
        "min_price.nanos",
        "less than or equal",
    ),
]


@pytest.mark.parametrize(("kind", "message", "path", "words"), CASES, ids=[c[0] for c in CASES])
def test_rule_violation_names_field(kind, message, path, words):
    with pytest.raises(InvalidArgument) as err:
        validate(message)
    fields = [v.field for v in err.value.violations]
    assert fields == [path], (kind, err.value.message)
    assert words.lower() in err.value.violations[0].description.lower()
    assert err.value.message.startswith(f"{path}: ")


def test_valid_messages_pass():
    for msg in [
        create(image_urls=["https://cdn.shopmesh.local/p/1.jpg"]),
        product.ReserveStockRequest(
            order_id="o-1", lines=[product.StockLine(product_id="p-0001", quantity=3)]
        ),
        user.RegisterUserRequest(email="a@b.co", password="long-enough", display_name="A"),
        user.UpdateProfileRequest(id="u-1", phone=""),  # empty clears the phone
        user.AddAddressRequest(user_id="u-1", address=ADDRESS),
        order.UpdateOrderStatusRequest(id="o-1", status=order.ORDER_STATUS_SHIPPED),
        product.ListProductsRequest(),
    ]:
        validate(msg)  # no exception


def test_optional_field_unset_is_not_checked():
    assert violations(product.UpdateProductRequest(id="p-1")) == []
    assert [v.field for v in violations(product.UpdateProductRequest(id="p-1", name=""))] == [
        "name"
    ]


def test_all_violations_are_reported_together():
    msg = product.ReserveStockRequest(
        order_id="bad id", lines=[product.StockLine(product_id="x" * 65, quantity=2000)]
    )
    fields = [v.field for v in violations(msg)]
    assert fields == ["order_id", "lines[0].product_id", "lines[0].quantity"]


def test_nul_characters_are_refused_in_every_string_field_with_its_path():
    """PostgreSQL text cannot hold U+0000: the fuzz suite got INTERNAL for one."""
    req = order.PlaceOrderRequest(
        idempotency_key="key-000001",
        user_id="u-1",
        lines=[order.LineItem(product_id="p-\x00", quantity=1)],
        shipping_address=common.Address(
            recipient_name="Ada\x00", line1="1 Main St", city="Lyon", postal_code="69001",
            country_code="FR",
        ),
    )  # fmt: skip
    found = {(v.field, v.description) for v in violations(req)}
    assert ("lines[0].product_id", "must not contain NUL (U+0000) characters") in found
    assert ("shipping_address.recipient_name", "must not contain NUL (U+0000) characters") in found
    with pytest.raises(InvalidArgument):
        validate(user.UpdateProfileRequest(id="u-1", display_name="Eve\x00"))
    # Elsewhere in a string the same text is fine.
    assert not [v for v in violations(user.UpdateProfileRequest(id="u-1", display_name="Eve 0"))]
