"""The catalog cache's rules (services/product/cache.py) with a fake clock and fake reads:
LSN freshness, notices during a fill, the fence, listener loss, TTL, list invalidation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.product.cache import CachedCatalogReader, CatalogCache
from services.product.domain import Category, ListProducts, Money, Page, Product, ProductSort

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def product(pid: str, stock: int = 5, name: str = "", category: str = "kitchen") -> Product:
    return Product(pid, f"SKU-{pid}", name or f"name {pid}", "", category,
                   Money("USD", 3), (), stock, NOW, NOW)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeReads:
    """The database behind the cache: rows, the LSN each read reports, and a hook that runs
    while a read is in flight (to deliver a notice mid-read)."""

    def __init__(self, seen: int = 10) -> None:
        self.rows: dict[str, Product] = {"p-1": product("p-1"), "p-2": product("p-2")}
        self.seen = seen
        self.afters: list[int] = []
        self.during: list = []

    async def get_at(self, pid, after):
        self.afters.append(after)
        for hook in self.during:
            hook()
        return self.rows.get(pid), self.seen

    async def list_page_at(self, query, after):
        self.afters.append(after)
        for hook in self.during:
            hook()
        return Page(tuple(self.rows[k] for k in sorted(self.rows)), ""), self.seen

    async def search(self, query):
        return Page((), "")

    async def categories_at(self, after):
        self.afters.append(after)
        for hook in self.during:
            hook()
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.category] = counts.get(row.category, 0) + 1
        return [Category(slug, n) for slug, n in sorted(counts.items())], self.seen


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock) -> CatalogCache:
    c = CatalogCache(ttl_s=2.0, max_products=100, max_pages=10, clock=clock)
    c.listening(5)
    return c


def reader(cache: CatalogCache, reads: FakeReads, need: int = 0) -> CachedCatalogReader:
    return CachedCatalogReader(reads, cache, lambda: need)


async def test_second_get_is_served_from_the_cache(cache):
    reads = FakeReads()
    assert (await reader(cache, reads).get("p-1")).stock == 5
    reads.rows["p-1"] = product("p-1", stock=1)  # the database changed, no notice yet
    assert (await reader(cache, reads).get("p-1")).stock == 5
    assert len(reads.afters) == 1 and cache.hits == 1


async def test_a_caller_lsn_newer_than_the_entry_reads_the_database(cache):
    reads = FakeReads(seen=10)
    await reader(cache, reads).get("p-1")
    reads.rows["p-1"] = product("p-1", stock=1)
    reads.seen = 20
    assert (await reader(cache, reads, need=15).get("p-1")).stock == 1
    assert reads.afters[-1] == 15  # the database read waits for the caller's LSN
    # ...and the refill (as of 20) now serves that caller from the cache
    assert (await reader(cache, reads, need=15).get("p-1")).stock == 1
    assert len(reads.afters) == 2


async def test_the_callers_number_is_never_taken_as_the_entrys_lsn(cache):
    """A client may send any x-shop-lsn: a read made for it is stored as of what the
    database reported, so a later, real, newer LSN still misses."""
    reads = FakeReads(seen=10)
    await reader(cache, reads, need=10**12).get("p-1")
    assert cache.hits == 0
    reads.rows["p-1"] = product("p-1", stock=0)
    assert (await reader(cache, reads, need=11).get("p-1")).stock == 0


async def test_a_notice_during_the_read_keeps_its_result_out(cache):
    reads = FakeReads()
    reads.during.append(lambda: cache.changed("row:p-1"))
    await reader(cache, reads).get("p-1")
    reads.during.clear()
    cache.fenced(30)
    reads.rows["p-1"] = product("p-1", stock=0)
    assert (await reader(cache, reads).get("p-1")).stock == 0
    assert cache.dropped == 1


async def test_until_its_fence_is_known_a_product_is_not_stored_then_fills_wait_for_it(cache):
    reads = FakeReads(seen=10)
    cache.changed("row:p-1")
    await reader(cache, reads).get("p-1")
    await reader(cache, reads).get("p-1")
    assert cache.hits == 0 and len(reads.afters) == 2  # pending: read through, not stored
    await reader(cache, reads).get("p-2")  # no notice about p-2: cached as usual
    await reader(cache, reads).get("p-2")
    assert cache.hits == 1
    cache.fenced(40)
    await reader(cache, reads).get("p-1")
    assert reads.afters[-1] == 40  # the refill must see every notified write
    await reader(cache, reads).get("p-1")
    assert cache.hits == 2


async def test_a_page_is_not_stored_while_a_notice_about_it_is_unfenced(cache):
    reads = FakeReads()
    r = reader(cache, reads)
    q = ListProducts(page_size=2)
    cache.changed("row:p-2")  # p-2 is on the page
    await r.list_page(q)
    assert cache.page(q, 0) is None
    cache.fenced(40)
    cache.changed("set:p-77")  # any page may have changed: no page until fenced
    await r.list_page(q)
    assert cache.page(q, 0) is None
    assert cache.product("p-1", 0) is None  # nor the products read with it
    cache.fenced(41)
    await r.list_page(q)
    assert reads.afters[-1] == 41
    assert cache.page(q, 0) is not None


async def test_a_notice_about_another_product_during_the_read_does_not_matter(cache):
    reads = FakeReads()
    reads.during.append(lambda: cache.changed("row:p-9"))
    await reader(cache, reads).get("p-1")
    reads.during.clear()
    assert cache.product("p-1", 0) is not None


async def test_row_notice_drops_the_product_and_only_the_pages_holding_it(cache):
    reads = FakeReads()
    r = reader(cache, reads)
    holding = ListProducts(page_size=2)
    other = ListProducts(page_size=2, category="garden")
    await r.list_page(holding)
    reads.rows = {"p-9": product("p-9")}
    await r.list_page(other)
    cache.changed("row:p-1")
    cache.fenced(50)
    assert cache.page(holding, 0) is None
    assert cache.page(other, 0) is not None
    assert cache.product("p-1", 0) is None
    assert cache.product("p-2", 0) is not None  # warmed by the page, not touched


async def test_set_notice_drops_every_page(cache):
    reads = FakeReads()
    r = reader(cache, reads)
    q1, q2 = ListProducts(), ListProducts(sort=ProductSort.PRICE_ASC)
    await r.list_page(q1)
    await r.list_page(q2)
    cache.changed("set:p-77")  # a new product: it may belong on any page
    assert cache.page(q1, 0) is None and cache.page(q2, 0) is None


async def test_unknown_notice_flushes_everything(cache):
    await reader(cache, FakeReads()).get("p-1")
    cache.changed("all")
    assert cache.product("p-1", 0) is None


async def test_listener_lost_bypasses_until_listening_again_with_a_new_fence(cache):
    reads = FakeReads(seen=10)
    await reader(cache, reads).get("p-1")
    cache.lost()
    reads.rows["p-1"] = product("p-1", stock=0)
    assert (await reader(cache, reads).get("p-1")).stock == 0
    assert (await reader(cache, reads).get("p-1")).stock == 0
    assert cache.hits == 0 and cache.bypassed == 2
    cache.listening(60)
    await reader(cache, reads).get("p-1")
    assert reads.afters[-1] == 60
    assert (await reader(cache, reads).get("p-1")).stock == 0
    assert cache.hits == 1


async def test_a_loss_during_a_read_keeps_its_result_out(cache):
    reads = FakeReads()
    reads.during.append(cache.lost)
    await reader(cache, reads).get("p-1")
    reads.during.clear()
    cache.listening(70)
    assert cache.product("p-1", 0) is None


async def test_entries_expire_after_the_ttl(cache, clock):
    reads = FakeReads()
    await reader(cache, reads).get("p-1")
    reads.rows["p-1"] = product("p-1", stock=0)  # changed with no notice (lost)
    clock.now += 1.9
    assert (await reader(cache, reads).get("p-1")).stock == 5
    clock.now += 0.2
    assert (await reader(cache, reads).get("p-1")).stock == 0
    assert cache.expired == 1


async def test_not_found_is_not_cached(cache):
    reads = FakeReads()
    assert await reader(cache, reads).get("p-404") is None
    reads.rows["p-404"] = product("p-404")
    assert await reader(cache, reads).get("p-404") is not None


async def test_size_bounds_drop_the_oldest(clock):
    cache = CatalogCache(ttl_s=60, max_products=2, max_pages=1, clock=clock)
    cache.listening(1)
    reads = FakeReads()
    reads.rows = {f"p-{i}": product(f"p-{i}") for i in range(3)}
    for i in range(3):
        await reader(cache, reads).get(f"p-{i}")
    assert cache.product("p-0", 0) is None
    assert cache.product("p-2", 0) is not None
    await reader(cache, reads).list_page(ListProducts(category="a"))
    await reader(cache, reads).list_page(ListProducts(category="b"))
    assert cache.page(ListProducts(category="a"), 0) is None


async def test_before_the_listener_starts_nothing_is_cached(clock):
    cache = CatalogCache(ttl_s=60, max_products=10, max_pages=10, clock=clock)
    reads = FakeReads()
    await reader(cache, reads).get("p-1")
    await reader(cache, reads).get("p-1")
    assert cache.hits == 0 and cache.bypassed == 2


async def test_a_loss_and_a_new_listen_during_a_read_keep_its_result_out(cache):
    """The read used the old fence; notices missed in the gap are only covered by the new
    one, so the result must not be stored even though the cache serves again."""
    reads = FakeReads()
    reads.during += [cache.lost, lambda: cache.listening(70)]
    await reader(cache, reads).get("p-1")
    assert cache.serving and cache.product("p-1", 0) is None


async def test_a_miss_on_an_unfenced_product_waits_for_the_fence_then_is_stored(cache):
    reads = FakeReads(seen=10)
    cache.changed("row:p-1")
    asyncio.get_running_loop().call_later(0.01, cache.fenced, 45)
    await reader(cache, reads).get("p-1")
    assert reads.afters == [45]  # read after the fence arrived, with it
    await reader(cache, reads).get("p-1")
    assert cache.hits == 1


async def test_without_a_fence_the_miss_reads_through_after_a_bounded_wait(cache):
    reads = FakeReads()
    cache.changed("row:p-1")
    await reader(cache, reads).get("p-1")  # no fence ever comes (and no hang)
    assert reads.afters == [5] and cache.product("p-1", 0) is None


async def test_categories_are_served_from_the_cache_until_a_set_notice(cache):
    reads = FakeReads()
    assert await reader(cache, reads).categories() == [Category("kitchen", 2)]
    reads.rows["p-3"] = product("p-3", category="garden")  # inserted: a set notice follows
    assert await reader(cache, reads).categories() == [Category("kitchen", 2)]
    assert len(reads.afters) == 1
    cache.changed("set:p-3")
    cache.fenced(40)
    assert await reader(cache, reads).categories() == [
        Category("garden", 1),
        Category("kitchen", 2),
    ]
    assert reads.afters[-1] == 40


async def test_a_row_notice_keeps_the_category_counts(cache):
    reads = FakeReads()
    await reader(cache, reads).categories()
    cache.changed("row:p-1")  # stock or description: no count moves
    cache.fenced(40)
    await reader(cache, reads).categories()
    assert len(reads.afters) == 1


async def test_a_set_notice_during_the_category_read_keeps_its_result_out(cache):
    reads = FakeReads()
    reads.during.append(lambda: cache.changed("set:p-9"))
    await reader(cache, reads).categories()
    reads.during.clear()
    cache.fenced(30)
    reads.rows["p-9"] = product("p-9", category="garden")
    assert await reader(cache, reads).categories() == [
        Category("garden", 1),
        Category("kitchen", 2),
    ]
    assert cache.dropped == 1


async def test_categories_older_than_the_callers_lsn_or_the_ttl_are_read_again(cache, clock):
    reads = FakeReads(seen=10)
    await reader(cache, reads).categories()
    reads.rows["p-3"] = product("p-3", category="garden")  # its notice lost
    reads.seen = 20
    assert len(await reader(cache, reads, need=15).categories()) == 2
    assert reads.afters[-1] == 15
    reads.rows["p-4"] = product("p-4", category="toys")  # lost again
    clock.now += 2.1
    assert len(await reader(cache, reads).categories()) == 3
    assert cache.expired == 1


async def test_categories_are_not_cached_without_the_listener(cache):
    reads = FakeReads()
    cache.lost()
    await reader(cache, reads).categories()
    await reader(cache, reads).categories()
    assert len(reads.afters) == 2 and cache.bypassed == 2
