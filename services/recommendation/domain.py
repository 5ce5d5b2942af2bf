"""Recommendation domain: orders as sets of products, co-purchase pairs, suggestions.
Stdlib only.

"Also bought" of a product = the products that were in the same placed orders, by how many
orders held both. Each OrderPlaced event is counted once (its event id is recorded in the
same transaction as the counts). A product with no co-purchase yet falls back to other
products of its category (cold start).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import permutations

from services.runtime.errors import NotFound, Unavailable

DEFAULT_LIMIT = 4
MAX_LIMIT = 20


class Source(enum.Enum):
    ALSO_BOUGHT = "also_bought"
    SAME_CATEGORY = "same_category"


@dataclass(frozen=True)
class OrderPlaced:
    event_id: str
    order_id: str
    product_ids: frozenset[str]

    def pairs(self) -> list[tuple[str, str]]:
        """Every ordered pair of distinct products (a, b): b was bought with a."""
        return list(permutations(sorted(self.product_ids), 2))


@dataclass(frozen=True)
class Suggestion:
    product_id: str
    orders_together: int = 0


@dataclass(frozen=True)
class Recommendations:
    suggestions: tuple[Suggestion, ...]
    source: Source


class ProductNotFoundError(NotFound):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id} not found")


class CatalogUnavailableError(Unavailable):
    pass
