"""gRPC handlers of shop.cart.v1.CartService: request -> use case -> response.

No business rules and no try/except here: validation (buf.validate), errors, deadlines,
metrics and the auth hook are the runtime server's. Ownership is checked here against the
verified caller: a shopper reads and changes only their own cart; an admin may read any
cart (support) but changes none, since a cart is the shopper's own intent.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from services.cart import service
from services.cart.domain import Cart, CartItem
from services.cart.ports import CartUnitOfWork
from services.runtime.auth import current_principal, require_self_or_admin
from services.runtime.errors import PermissionDenied
from services.runtime.rpc import unary
from shop.cart.v1 import cart_pb2 as pb
from shop.cart.v1.cart_grpc import CartServiceBase


def to_proto(cart: Cart) -> pb.Cart:
    msg = pb.Cart(
        user_id=cart.user_id,
        items=[pb.CartItem(product_id=i.product_id, quantity=i.quantity) for i in cart.items],
    )
    if cart.updated_at is not None:
        ts = Timestamp()
        ts.FromDatetime(cart.updated_at)
        msg.update_time.CopyFrom(ts)
    return msg


def require_owner(user_id: str) -> None:
    """Only the shopper changes their cart (the token's subject)."""
    if current_principal().user_id != user_id:
        raise PermissionDenied("not your cart")


class CartHandlers(CartServiceBase):
    def __init__(self, uow: Callable[[], CartUnitOfWork]) -> None:
        self.uow = uow

    @unary
    async def GetCart(self, request: pb.GetCartRequest) -> pb.GetCartResponse:
        require_self_or_admin(request.user_id)
        cart = await service.get_cart(request.user_id, self.uow())
        return pb.GetCartResponse(cart=to_proto(cart))

    @unary
    async def AddItem(self, request: pb.AddItemRequest) -> pb.AddItemResponse:
        require_owner(request.user_id)
        cart = await service.add_item(
            request.user_id, request.product_id, request.quantity, self.uow()
        )
        return pb.AddItemResponse(cart=to_proto(cart))

    @unary
    async def SetItemQuantity(
        self, request: pb.SetItemQuantityRequest
    ) -> pb.SetItemQuantityResponse:
        require_owner(request.user_id)
        cart = await service.set_quantity(
            request.user_id, request.product_id, request.quantity, self.uow()
        )
        return pb.SetItemQuantityResponse(cart=to_proto(cart))

    @unary
    async def RemoveItem(self, request: pb.RemoveItemRequest) -> pb.RemoveItemResponse:
        require_owner(request.user_id)
        cart = await service.remove_item(request.user_id, request.product_id, self.uow())
        return pb.RemoveItemResponse(cart=to_proto(cart))

    @unary
    async def MergeCart(self, request: pb.MergeCartRequest) -> pb.MergeCartResponse:
        require_owner(request.user_id)
        items = [CartItem(i.product_id, i.quantity) for i in request.items]
        cart, dropped = await service.merge_cart(request.user_id, items, self.uow())
        return pb.MergeCartResponse(cart=to_proto(cart), dropped_product_ids=dropped)

    @unary
    async def EmptyCart(self, request: pb.EmptyCartRequest) -> pb.EmptyCartResponse:
        require_owner(request.user_id)
        cart = await service.empty_cart(request.user_id, self.uow())
        return pb.EmptyCartResponse(cart=to_proto(cart))
