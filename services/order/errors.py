"""The order domain's errors: what a use case raises on purpose, each a subclass of the
runtime's NotFound, InvalidArgument, FailedPrecondition, Conflict or Unavailable (mapped to
gRPC statuses by services/runtime/errors.py alone). Stdlib and the runtime's error bases only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.runtime.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

if TYPE_CHECKING:
    from services.order.domain import OrderStatus


class OrderNotFoundError(NotFound):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} not found")


class UserNotFoundError(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} not found")


class UnknownProductError(InvalidArgument):
    """A line names a product the catalog does not have (the request is wrong, not the
    catalog's state, hence INVALID_ARGUMENT naming the line)."""

    def __init__(self, field_path: str, product_id: str) -> None:
        super().__init__(field_path, f"unknown product {product_id}")
        self.product_id = product_id


class OutOfStockError(FailedPrecondition):
    def __init__(self, product_id: str = "", detail: str = "") -> None:
        super().__init__(detail or f"not enough stock for product {product_id}".strip())
        self.product_id = product_id


class InvalidTransitionError(FailedPrecondition):
    def __init__(self, current: OrderStatus, wanted: OrderStatus) -> None:
        super().__init__(f"order is {current.value}, cannot become {wanted.value}")


class IdempotencyKeyReusedError(InvalidArgument):
    def __init__(self) -> None:
        super().__init__(
            "idempotency_key", "already used by this user for a different order request"
        )


class PlacementAbandonedError(Conflict):
    """The placement lost to a cancel or the sweeper; retrying with a new key may succeed."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} was abandoned while being placed")


class CatalogUnavailableError(Unavailable):
    pass


class UserServiceUnavailableError(Unavailable):
    pass


class OrderStoreUnavailableError(Unavailable):
    """The order store (FerretDB / MongoDB) cannot be reached: UNAVAILABLE, safe to retry
    (PlaceOrder is idempotent by key; a half-made order is resumed or swept)."""


class MixedCurrencyError(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__("products of one order must share one currency")
