"""What the recommendation use cases need from outside. Stdlib + domain only."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.recommendation.domain import OrderPlaced, Suggestion


class CoPurchases(Protocol):
    async def record(self, event: OrderPlaced) -> bool:
        """Count the event's pairs unless its event id was counted before; True if counted.
        The id and the counts are written in one transaction."""
        ...

    async def also_bought(self, product_id: str, limit: int) -> list[Suggestion]:
        """Most often bought with the product first (ties by product id)."""
        ...


class CoPurchaseUnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[CoPurchases]: ...

    def read(self) -> AbstractAsyncContextManager[CoPurchases]: ...


class Catalog(Protocol):
    async def category_of(self, product_id: str) -> str | None:
        """The product's category; None when the product does not exist. Raises
        CatalogUnavailableError."""
        ...

    async def in_category(self, category: str, limit: int) -> list[str]:
        """Up to `limit` product ids of the category. Raises CatalogUnavailableError."""
        ...
