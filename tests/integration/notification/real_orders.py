"""A real order through the stack's order service, for the tests of its emails."""

from __future__ import annotations

import uuid

from grpclib.client import Channel

from shop.common.v1 import common_pb2
from shop.order.v1 import order_pb2
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES
from shop.user.v1 import user_grpc, user_pb2
from stack.callers import as_platform

SHIP_TO = common_pb2.Address(
    recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001", country_code="FR"
)


async def place_real_order(stack, quantity: int = 2) -> tuple[order_pb2.Order, str]:
    """An order placed through the stack's order service; (order, the buyer's email)."""
    stack.require("order", "auth")
    # Setup as the platform: the demo admin creates the product and orders for the buyer.
    chans = [
        as_platform(Channel("127.0.0.1", p))
        for p in (SERVICES["order"].port, SERVICES["product"].port, SERVICES["user"].port)
    ]
    try:
        orders, products = OrderServiceStub(chans[0]), ProductServiceStub(chans[1])
        address = f"buyer-{uuid.uuid4().hex[:6]}@shop.test"
        user = (
            await user_grpc.UserServiceStub(chans[2]).RegisterUser(
                user_pb2.RegisterUserRequest(
                    email=address, password="correct horse", display_name="Buyer"
                )
            )
        ).user
        product = (
            await products.CreateProduct(
                product_pb2.CreateProductRequest(
                    sku=f"NT-{uuid.uuid4().hex[:8]}",
                    name="Teapot",
                    category="test",
                    price=common_pb2.Money(currency_code="USD", units=12, nanos=250_000_000),
                    stock=50,
                )
            )
        ).product
        order = (
            await orders.PlaceOrder(
                order_pb2.PlaceOrderRequest(
                    idempotency_key=f"nt-{uuid.uuid4().hex}",
                    user_id=user.id,
                    lines=[order_pb2.LineItem(product_id=product.id, quantity=quantity)],
                    shipping_address=SHIP_TO,
                )
            )
        ).order
        return order, address
    finally:
        for c in chans:
            c.close()
