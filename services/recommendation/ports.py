"""What the recommendation use cases need from outside. Stdlib + domain only."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from services.recommendation.domain import OrderPlaced, Suggestion


class CoPurchases(Protocol):
    async def record(self, events: Sequence[OrderPlaced]) -> list[str]:
        """Count the pairs of each event whose id was not counted before (also within
        `events`); returns the ids counted. The ids and the counts are written in the one
        transaction of the unit of work."""
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
