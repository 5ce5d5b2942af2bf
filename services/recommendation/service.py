"""Recommendation use cases: count a placed order, suggest products. Stdlib, domain, ports."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.recommendation.domain import (
    DEFAULT_LIMIT,
    CatalogUnavailableError,
    OrderPlaced,
    ProductNotFoundError,
    Recommendations,
    Source,
    Suggestion,
)
from services.recommendation.ports import Catalog, CoPurchaseUnitOfWork

log = logging.getLogger(__name__)


async def orders_placed(events: Sequence[OrderPlaced], uow: CoPurchaseUnitOfWork) -> int:
    """Count the orders' co-purchases, each event once (a redelivered one counts nothing), in
    one transaction; returns how many were counted."""
    async with uow.write() as repo:
        return len(await repo.record(events))


async def recommend(
    product_id: str, limit: int, uow: CoPurchaseUnitOfWork, catalog: Catalog
) -> Recommendations:
    limit = limit or DEFAULT_LIMIT
    async with uow.read() as repo:
        bought = await repo.also_bought(product_id, limit)
    if bought:
        return Recommendations(tuple(bought), Source.ALSO_BOUGHT)
    try:  # cold start: the product's category
        category = await catalog.category_of(product_id)
        if category is None:
            raise ProductNotFoundError(product_id)
        ids = await catalog.in_category(category, limit + 1)
    except CatalogUnavailableError:
        # A product page without suggestions beats a failed product page.
        log.warning("catalog unavailable: no cold-start suggestions")
        return Recommendations((), Source.SAME_CATEGORY)
    others = [Suggestion(pid) for pid in ids if pid != product_id][:limit]
    return Recommendations(tuple(others), Source.SAME_CATEGORY)
