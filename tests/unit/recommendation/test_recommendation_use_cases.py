"""Recommendation core: pairs of an order, also-bought first, cold start (fakes, no I/O)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from services.recommendation import service
from services.recommendation.domain import (
    CatalogUnavailableError,
    OrderPlaced,
    ProductNotFoundError,
    Source,
    Suggestion,
)


class FakeCoPurchases:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.counts: dict[tuple[str, str], int] = {}

    async def record(self, events: list[OrderPlaced]) -> list[str]:
        counted = []
        for event in events:
            if event.event_id in self.seen:
                continue
            self.seen.add(event.event_id)
            counted.append(event.event_id)
            for pair in event.pairs():
                self.counts[pair] = self.counts.get(pair, 0) + 1
        return counted

    async def also_bought(self, product_id: str, limit: int) -> list[Suggestion]:
        mine = [(b, n) for (a, b), n in self.counts.items() if a == product_id]
        mine.sort(key=lambda x: (-x[1], x[0]))
        return [Suggestion(b, n) for b, n in mine[:limit]]


class FakeUow:
    def __init__(self, repo: FakeCoPurchases) -> None:
        self.repo = repo

    @asynccontextmanager
    async def write(self):
        yield self.repo

    @asynccontextmanager
    async def read(self):
        yield self.repo


class FakeCatalog:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.categories = {"p1": "kitchen", "p2": "kitchen", "p3": "kitchen", "p9": "books"}

    async def category_of(self, product_id: str) -> str | None:
        if self.down:
            raise CatalogUnavailableError("down")
        return self.categories.get(product_id)

    async def in_category(self, category: str, limit: int) -> list[str]:
        return [p for p, c in self.categories.items() if c == category][:limit]


def test_an_order_pairs_every_two_distinct_products_both_ways():
    ev = OrderPlaced("e", "o", frozenset({"b", "a", "c"}))
    assert ev.pairs() == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")]
    assert OrderPlaced("e", "o", frozenset({"a"})).pairs() == []


async def test_also_bought_most_often_first_and_an_event_counts_once():
    repo = FakeCoPurchases()
    uow = FakeUow(repo)
    events = [OrderPlaced(f"e{i}", f"o{i}", frozenset(b)) for i, b in
              enumerate([{"x", "y"}, {"x", "y", "z"}, {"x", "z"}, {"x", "y"}])]  # fmt: skip
    assert await service.orders_placed(events[:1], uow) == 1
    assert await service.orders_placed([*events, events[1]], uow) == 3  # redelivered, twice
    got = await service.recommend("x", 0, uow, FakeCatalog())
    assert got.source is Source.ALSO_BOUGHT
    assert got.suggestions == (Suggestion("y", 3), Suggestion("z", 2))


async def test_cold_start_suggests_the_category_without_the_product_itself():
    got = await service.recommend("p1", 4, FakeUow(FakeCoPurchases()), FakeCatalog())
    assert got.source is Source.SAME_CATEGORY
    assert [s.product_id for s in got.suggestions] == ["p2", "p3"]


async def test_cold_start_of_an_unknown_product_is_not_found():
    with pytest.raises(ProductNotFoundError):
        await service.recommend("nope", 4, FakeUow(FakeCoPurchases()), FakeCatalog())


async def test_a_dead_catalog_gives_no_suggestions_rather_than_an_error():
    got = await service.recommend("p1", 4, FakeUow(FakeCoPurchases()), FakeCatalog(down=True))
    assert got.suggestions == () and got.source is Source.SAME_CATEGORY
