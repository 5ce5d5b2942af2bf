"""Read-through cache of catalog rows (GetProduct by id, ListProducts pages, the category
list with its product counts) in each
product-service process, kept correct across processes by PostgreSQL LISTEN/NOTIFY.

What it promises:
- Never older than the caller's read-your-writes LSN. Every entry carries `as_of`, an LSN
  the read that filled it is known to include (services.runtime.db `fetch`: the replica's
  replay position before the statement, never the caller's number). A caller whose
  `x-shop-lsn` (or own write) is newer than `as_of` misses and reads the database, which
  waits for the replica as before.
- Invalidated on every process when any process writes: a trigger on `products`
  (migration 0002) NOTIFYs `catalog_changed` in the writing transaction, and every process
  LISTENs on a connection of its own (services.runtime.db ChangeListener). A notice drops
  the product and the list pages that hold it (`row:<id>`), or every page when the
  product's list position may have moved (`set:<id>`).
- No stale refill after a notice. A fill is stored only if every notice about its key
  (the product; for a page, each of its products and any notice that may move pages) had
  its LSN fence known when the fill began: the fill read with `after=fence`, so a replica
  that has not yet replayed the write was waited for (or the primary read). A notice about
  the key during the read, or one whose fence is still unknown, keeps the result out;
  notices about other products do not (checked per key, so stock churn on some products
  does not stop the others from being cached). A miss on a key whose notice is not fenced
  yet first waits (at most FENCE_WAIT_S) for the fence, so its refill can be stored.
- Listener lost -> flushed and bypassed (every read goes to the database) until it LISTENs
  again; it then starts empty with the fence at the primary's LSN of that moment, since
  notices in between were missed.
- Bounded staleness: an entry is re-read at the latest `ttl_s` after its read, notice or
  not. So stock (or anything) shown is at most `ttl_s` plus the replica's replay lag old
  if a notice were lost without the connection noticing; normally it is dropped within
  milliseconds of the commit. Reservations never read the cache: they take stock with a
  conditional UPDATE on the primary.

The category list (ListCategories: each category's product count) is kept like a page:
a `set:` notice (a product inserted, deleted, or moved to another category) drops it, a
`row:` notice (stock, description, ...) cannot change a count and leaves it. A category
row written without any product write (none of our code does: _ensure_category runs in
the product's own transaction) is seen within `ttl_s`.

Only rows are cached (never NOT_FOUND); search is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from services.product.domain import Category, ListProducts, Page, Product, SearchProducts
from services.runtime.metrics import Metrics, Sample

CHANNEL = "catalog_changed"
# How long a miss waits for the fence of a notice about its key (normally one round trip
# of the listener; longer only on a starved loop): long enough to let the refill be
# stored, short enough that a slow listener costs little latency.
FENCE_WAIT_S = 0.05

# When a fill started: (generation, fence, fenced generation = notices the fence covers)
Ticket = tuple[int, int, int]


class CatalogCache:
    """The entries and the invalidation state; the ChangeSink of the listener. Not
    thread-safe: one event loop per process, as every service runs."""

    def __init__(
        self,
        ttl_s: float,
        max_products: int,
        max_pages: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_products = max(1, max_products)
        self.max_pages = max(1, max_pages)
        self._clock = clock
        self.serving = False  # until the listener LISTENs: without it, changes go unseen
        self.generation = 0  # bumped by every notice, loss and (re)start
        self.fence = 0  # the notices up to generation `fenced_gen` are visible at this LSN
        self.fenced_gen = 0
        self._epoch = 0  # generation of the last loss or (re)start: older fills are void
        self._pages_gen = 0  # generation of the last notice that may move any list page
        self._touched: dict[str, int] = {}  # product id -> generation of its last notice
        self._fence_event: asyncio.Event | None = None  # set at the next fenced() / lost()
        # id -> (product, as_of, expires); ListProducts -> (page, as_of, expires, ids)
        self._products: dict[str, tuple[Product, int, float]] = {}
        self._pages: dict[ListProducts, tuple[Page, int, float, frozenset[str]]] = {}
        self._categories: tuple[list[Category], int, float] | None = None  # as a page
        self.hits = self.misses = self.bypassed = self.expired = 0
        self.stored = self.dropped = self.notices = self.flushes = 0

    # ------------------------------------------------------------ lookups

    def product(self, product_id: str, need: int) -> Product | None:
        """The cached product if it is fresh and includes LSN `need`, else None."""
        if not self.serving:
            self.bypassed += 1
            return None
        entry = self._products.get(product_id)
        if entry is not None and entry[1] >= need:
            if self._clock() < entry[2]:
                self.hits += 1
                return entry[0]
            del self._products[product_id]
            self.expired += 1
        self.misses += 1
        return None

    def page(self, query: ListProducts, need: int) -> Page | None:
        if not self.serving:
            self.bypassed += 1
            return None
        entry = self._pages.get(query)
        if entry is not None and entry[1] >= need:
            if self._clock() < entry[2]:
                self.hits += 1
                return entry[0]
            del self._pages[query]
            self.expired += 1
        self.misses += 1
        return None

    def categories(self, need: int) -> list[Category] | None:
        """The cached category list if it is fresh and includes LSN `need`, else None.
        The list is shared: callers must not change it."""
        if not self.serving:
            self.bypassed += 1
            return None
        entry = self._categories
        if entry is not None and entry[1] >= need:
            if self._clock() < entry[2]:
                self.hits += 1
                return entry[0]
            self._categories = None
            self.expired += 1
        self.misses += 1
        return None

    # ------------------------------------------------------------ fills

    @property
    def pending(self) -> bool:
        """A notice arrived whose fence is not known yet."""
        return self.fenced_gen != self.generation

    def unfenced(self, product_id: str | None = None) -> bool:
        """Is a notice about this product (None: about any product) not fenced yet?"""
        if product_id is None:
            return self.fenced_gen != self.generation
        return self._touched.get(product_id, 0) > self.fenced_gen

    async def wait_fenced(self, limit_s: float = FENCE_WAIT_S) -> None:
        """Until the next fence (or loss), at most `limit_s`."""
        if self._fence_event is None:
            self._fence_event = asyncio.Event()
        event = self._fence_event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await event.wait()

    def _wake(self) -> None:
        event, self._fence_event = self._fence_event, None
        if event is not None:
            event.set()

    def ticket(self) -> Ticket | None:
        """Taken before a fill's read (which must read with after >= ticket[1]); None
        when the result must not be stored."""
        if not self.serving:
            return None
        return self.generation, self.fence, self.fenced_gen

    def put_product(self, ticket: Ticket | None, product: Product, seen: int) -> None:
        """Store a product read after `ticket` was taken; `seen` = the LSN the read is
        known to include (it includes the ticket's fence too: it read with after=fence)."""
        if not self._admit(ticket, (product.id,)):
            return
        assert ticket is not None
        self._store_product(product, max(seen, ticket[1]), self._clock() + self.ttl_s)

    def put_page(self, ticket: Ticket | None, query: ListProducts, page: Page, seen: int) -> None:
        """Store a page, and each of its products (they were read at the same LSN)."""
        if ticket is not None and self._pages_gen > ticket[2]:
            ticket = self._drop()  # a product may have moved between pages since
        if not self._admit(ticket, [p.id for p in page.products]):
            return
        assert ticket is not None
        as_of, expires = max(seen, ticket[1]), self._clock() + self.ttl_s
        if len(self._pages) >= self.max_pages:
            del self._pages[next(iter(self._pages))]  # the oldest fill
        self._pages[query] = (page, as_of, expires, frozenset(p.id for p in page.products))
        for p in page.products:
            self._store_product(p, as_of, expires)

    def put_categories(self, ticket: Ticket | None, categories: list[Category], seen: int) -> None:
        """Store the category list unless a notice that may change a count (a `set:` or
        `all`, as for pages) came after the ticket's fence."""
        if ticket is not None and self._pages_gen > ticket[2]:
            ticket = self._drop()
        if not self._admit(ticket, ()):
            return
        assert ticket is not None
        self._categories = (categories, max(seen, ticket[1]), self._clock() + self.ttl_s)

    def _admit(self, ticket: Ticket | None, product_ids: Sequence[str]) -> bool:
        """May a fill of `ticket` holding these products be stored?"""
        if ticket is None:
            return False
        if not self.serving or self._epoch > ticket[0]:
            return bool(self._drop())  # lost (or restarted) while it read
        covered = ticket[2]  # notices the fill's after=fence included
        touched = self._touched
        for product_id in product_ids:
            if touched.get(product_id, 0) > covered:
                return bool(self._drop())  # a write to it the fill may have missed
        self.stored += 1
        return True

    def _drop(self) -> None:
        self.dropped += 1

    def _store_product(self, product: Product, as_of: int, expires: float) -> None:
        known = self._products.get(product.id)
        if known is not None and known[1] > as_of:
            return  # a newer read is already there
        if known is None and len(self._products) >= self.max_products:
            del self._products[next(iter(self._products))]
        self._products[product.id] = (product, as_of, expires)

    # ------------------------------------------------------------ ChangeSink

    def changed(self, payload: str) -> None:
        self.notices += 1
        self.generation += 1
        gen = self.generation
        kind, _, product_id = payload.partition(":")
        if kind in ("row", "set") and product_id:
            if len(self._touched) >= 4 * self.max_products:
                self._touched.clear()  # bounded; fills older than now are void instead
                self._epoch = gen
            self._touched[product_id] = gen
            self._products.pop(product_id, None)
            if kind == "row":  # the product stays where it was in every list
                stale = [q for q, e in self._pages.items() if product_id in e[3]]
                for q in stale:
                    del self._pages[q]
            else:
                self._pages_gen = gen
                self._pages.clear()
                self._categories = None
        else:  # "all", or a payload this version does not know: drop everything
            self._touched.clear()
            self._epoch = self._pages_gen = gen
            self.flush()

    def fenced(self, lsn: int) -> None:
        """Every notice so far is visible at `lsn` (the listener calls it synchronously
        after its WAL query, with no notice in between)."""
        self.fence = max(self.fence, lsn)
        self.fenced_gen = self.generation
        self._wake()

    def lost(self) -> None:
        self.serving = False
        self.generation += 1
        self._epoch = self.generation
        self.flush()
        self._wake()

    def listening(self, lsn: int) -> None:
        self.flush()
        self.generation += 1
        self._epoch = self.generation
        self._touched.clear()
        self.fence = max(self.fence, lsn)
        self.fenced_gen = self.generation
        self.serving = True
        self._wake()

    def flush(self) -> None:
        """Drop every entry (the invalidation state stays as it is)."""
        if self._products or self._pages or self._categories:
            self.flushes += 1
        self._products.clear()
        self._pages.clear()
        self._categories = None

    # ------------------------------------------------------------ metrics

    def gauges(self) -> Iterator[Sample]:
        """Read at scrape time (no work on the hot path): lookups by result, entries."""
        what = "catalog cache lookups since start by result"
        for result, n in (
            ("hit", self.hits),
            ("miss", self.misses),
            ("bypass", self.bypassed),
            ("expired", self.expired),
        ):
            yield "catalog_cache_lookups", what, {"result": result}, float(n)
        what = "catalog cache fills since start: stored, or dropped (a notice came meanwhile)"
        for result, n in (("stored", self.stored), ("dropped", self.dropped)):
            yield "catalog_cache_fills", what, {"result": result}, float(n)
        what = "catalog cache entries by kind"
        yield "catalog_cache_entries", what, {"kind": "product"}, float(len(self._products))
        yield "catalog_cache_entries", what, {"kind": "page"}, float(len(self._pages))
        yield "catalog_cache_notices", "change notices received", {}, float(self.notices)
        yield "catalog_cache_serving", "1 while listening (else bypassed)", {}, float(self.serving)

    def register(self, metrics: Metrics) -> None:
        metrics.gauge_at_scrape("catalog_cache", self.gauges)

    def stats(self) -> dict[str, Any]:
        """State and counters (tests, benchmarks, debugging)."""
        keys = ("serving", "pending", "fence", "generation", "hits", "misses", "bypassed",
                "expired", "stored", "dropped", "notices", "flushes")  # fmt: skip
        return {k: getattr(self, k) for k in keys}


class VersionedReads(Protocol):
    """The database reads behind the cache, each with the LSN its rows include."""

    async def get_at(self, product_id: str, after: int) -> tuple[Product | None, int]: ...

    async def list_page_at(self, query: ListProducts, after: int) -> tuple[Page, int]: ...

    async def search(self, query: SearchProducts) -> Page: ...

    async def categories_at(self, after: int) -> tuple[list[Category], int]: ...


class CachedCatalogReader:
    """The read side of the product ports with the cache in front of get and list_page."""

    __slots__ = ("_cache", "_need", "_reads")

    def __init__(self, reads: VersionedReads, cache: CatalogCache, need: Callable[[], int]):
        self._reads = reads
        self._cache = cache
        self._need = need  # the caller's read-your-writes LSN (UnitOfWork.need_lsn)

    async def get(self, product_id: str) -> Product | None:
        cache, need = self._cache, self._need()
        product = cache.product(product_id, need)
        if product is not None:
            return product
        if cache.unfenced(product_id):
            await cache.wait_fenced()
        ticket = cache.ticket()  # its fence is cache.fence: nothing runs in between
        product, seen = await self._reads.get_at(product_id, max(need, cache.fence))
        if product is not None:
            cache.put_product(ticket, product, seen)
        return product

    async def list_page(self, query: ListProducts) -> Page:
        cache, need = self._cache, self._need()
        page = cache.page(query, need)
        if page is not None:
            return page
        if cache.unfenced():  # which products the page holds is known only after the read
            await cache.wait_fenced()
        ticket = cache.ticket()
        page, seen = await self._reads.list_page_at(query, max(need, cache.fence))
        cache.put_page(ticket, query, page, seen)
        return page

    async def search(self, query: SearchProducts) -> Page:
        return await self._reads.search(query)

    async def categories(self) -> list[Category]:
        cache, need = self._cache, self._need()
        categories = cache.categories(need)
        if categories is not None:
            return categories
        if cache.unfenced():  # any product's notice may move a count
            await cache.wait_fenced()
        ticket = cache.ticket()
        categories, seen = await self._reads.categories_at(max(need, cache.fence))
        cache.put_categories(ticket, categories, seen)
        return categories
