"""Order use cases: the placement saga, cancellation, status changes, reads and the sweeper.

Stdlib, domain and ports only. The saga, and why it cannot end half made:

1. A PENDING placeholder is inserted under the unique (user_id, idempotency_key) index, so
   racing requests with one key all find the same order id and continue the same saga
   (insert first: only a request whose insert lost looks the key up).
2. ReserveStock is idempotent by order id, so every racer may call it; they all get the
   same reservation at catalog prices. The shipping quote the order names is checked just
   before, the prices are converted into the shopper's currency just after (pricing.py).
3. Leaving PENDING is a versioned single-document write: exactly one racer confirms (and
   appends OrderPlaced in that same write); the others reload and return that order.
4. A failure marks the order FAILED (versioned, so never after a racer confirmed), then
   releases the stock. A cancel marks CANCELLED the same way. Both set release_pending in
   that write, so a crash before ReleaseStock is finished by the sweeper.
5. The sweeper fails PENDING orders older than any request could be (a crashed process),
   retries pending releases, and deletes FAILED tombstones once no request can still race.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.order.domain import (
    CancelOrder,
    ListOrders,
    Order,
    OrderStatus,
    PlaceOrder,
    Trace,
    UpdateOrderStatus,
    new_order_id,
    request_fingerprint,
)
from services.order.errors import (
    CatalogUnavailableError,
    IdempotencyKeyReusedError,
    OrderNotFoundError,
    PlacementAbandonedError,
    UserNotFoundError,
    UserServiceUnavailableError,
)
from services.order.ports import (
    Catalog,
    Cursor,
    NoObserver,
    OrderRepository,
    PlacementObserver,
    UserDirectory,
)
from services.order.pricing import Pricer
from services.order.validation import validate_place_order
from services.runtime.errors import (
    Conflict,
    DomainError,
    InvalidArgument,
)

log = logging.getLogger(__name__)

DEFAULT_PAGE = 20
MAX_PAGE = 100
SAVE_ATTEMPTS = 5


def utcnow() -> dt.datetime:
    """Now, to the millisecond: the store (a BSON date) keeps milliseconds, so a finer time
    would make PlaceOrder's first reply differ from every later read of the same order."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class SweepReport:
    failed: int = 0
    released: int = 0
    deleted: int = 0


def failure_reason(exc: BaseException) -> str:
    """Low-cardinality label for the orders_failed metric."""
    name = type(exc).__name__
    return {
        "UnknownProductError": "unknown_product",
        "OutOfStockError": "out_of_stock",
        "UserNotFoundError": "user_not_found",
        "IdempotencyKeyReusedError": "key_reused",
        "PlacementAbandonedError": "abandoned",
        "MixedCurrencyError": "mixed_currency",
        "CatalogUnavailableError": "catalog_unavailable",
        "UserServiceUnavailableError": "user_unavailable",
        "UnknownQuoteError": "quote_unknown",
        "QuoteMismatchError": "quote_mismatch",
        "QuoteExpiredError": "quote_expired",
    }.get(name, "invalid_argument" if isinstance(exc, InvalidArgument) else "error")


def encode_cursor(order: Order) -> str:
    raw = json.dumps({"t": order.created_at.isoformat(), "id": order.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return Cursor(dt.datetime.fromisoformat(data["t"]), str(data["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "not a token from a previous response") from None


class OrderService:
    """The use cases; one instance per process, stateless between calls (ports hold the
    connections, never per-request state)."""

    def __init__(
        self,
        repo: OrderRepository,
        users: UserDirectory,
        catalog: Catalog,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        observer: PlacementObserver | None = None,
        pricer: Pricer | None = None,
        pending_timeout: dt.timedelta = dt.timedelta(seconds=60),
        tombstone_ttl: dt.timedelta = dt.timedelta(minutes=10),
    ) -> None:
        self.repo = repo
        self.users = users
        self.catalog = catalog
        self.clock = clock
        self.observer = observer or NoObserver()
        # None: orders charge their catalog total only (no currency, no shipping).
        self.pricer = pricer
        # Longer than PlaceOrder's deadline (10 s in the schema) with margin: a PENDING order
        # this old has no live request behind it.
        self.pending_timeout = pending_timeout
        self.tombstone_ttl = tombstone_ttl

    # ------------------------------------------------------------ PlaceOrder

    async def place_order(self, cmd: PlaceOrder) -> Order:
        try:
            order, replayed = await self._place(cmd)
        except DomainError as exc:
            self.observer.failed(failure_reason(exc))
            raise
        except Exception:
            self.observer.failed("error")
            raise
        self.observer.placed(replayed)
        return order

    async def _place(self, cmd: PlaceOrder) -> tuple[Order, bool]:
        items = validate_place_order(cmd)
        if not cmd.by_the_user:  # an admin or a service acting for the user: ask
            try:
                known = await self.users.user_exists(cmd.user_id)
            except UserServiceUnavailableError:
                replay = await self._replay(cmd)  # a finished order needs no user check
                if replay is None:
                    raise
                return replay, True
            if not known:
                raise UserNotFoundError(cmd.user_id)
        # Insert first, look the key up only when it is taken: the insert is one write, the
        # lookup a second round trip, and a new key is the common case.
        order = await self._insert_pending(cmd, items)
        if order.status is not OrderStatus.PENDING:
            return order, True
        return await self._complete(order, cmd.trace), False

    async def _replay(self, cmd: PlaceOrder) -> Order | None:
        existing = await self.repo.get_by_key(cmd.user_id, cmd.idempotency_key)
        if existing is None or not existing.visible:
            return None
        self._same_request(existing, cmd)
        return None if existing.status is OrderStatus.PENDING else existing

    def _same_request(self, order: Order, cmd: PlaceOrder) -> None:
        if order.request_hash != request_fingerprint(cmd):
            raise IdempotencyKeyReusedError()

    async def _insert_pending(self, cmd: PlaceOrder, items: tuple) -> Order:
        for _ in range(SAVE_ATTEMPTS):
            order = Order.start(new_order_id(), cmd, items, self.clock())
            if await self.repo.add(order):
                return order
            other = await self.repo.get_by_key(cmd.user_id, cmd.idempotency_key)
            if other is None:
                continue  # its tombstone was retired meanwhile
            if not other.visible:
                await self.repo.retire_key(other)  # an earlier failed attempt: start afresh
                continue
            self._same_request(other, cmd)
            return other
        raise Conflict("too many concurrent placements for this idempotency key")

    async def _complete(self, order: Order, trace: Trace | None) -> Order:
        try:
            quote = await self.pricer.quote(order, self.clock()) if self.pricer else None
            reserved = await self.catalog.reserve_stock(order.id, order.items)
            pricing = None
            if self.pricer and reserved:
                prices = [line.unit_price for line in reserved]
                pricing = await self.pricer.price(order, prices, quote)
            order.confirm(reserved, self.clock(), trace, pricing)
        except Exception as exc:
            # (Cancellation is not caught: a request past its deadline leaves the order
            # PENDING, so the client's retry with the same key resumes it.)
            winner = await self._abandon(order)
            if winner is not None:
                return winner  # a racer confirmed the same order: its answer is ours
            if not isinstance(exc, DomainError):
                log.warning("reservation failed", exc_info=exc)
                raise CatalogUnavailableError("catalog unavailable, retry later") from exc
            raise
        if await self.repo.save(order):
            return order
        current = await self.repo.get(order.id)
        if current is not None and current.status not in (
            OrderStatus.PENDING,
            OrderStatus.FAILED,
            OrderStatus.CANCELLED,
        ):
            return current  # a racing request with the same key confirmed first
        if current is not None and current.status is OrderStatus.PENDING:
            return await self._complete(current, trace)  # version moved but still open
        # Cancelled or swept while we reserved: the order is terminal, so releasing cannot
        # take stock from a live order.
        await self._release(order.id)
        raise PlacementAbandonedError(order.id)

    async def _abandon(self, order: Order) -> Order | None:
        """Mark a PENDING order FAILED and release its stock. Returns the order instead when
        a racer confirmed it first (then its reservation is live and must stay)."""
        for _ in range(SAVE_ATTEMPTS):
            current = await self.repo.get(order.id)
            if current is None:
                return None
            if current.status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
                break
            if current.status is not OrderStatus.PENDING:
                return current
            current.fail(self.clock())
            if await self.repo.save(current):
                break
        await self._release(order.id)
        return None

    async def _release(self, order_id: str) -> None:
        """Release now if possible; on failure release_pending stays set for the sweeper."""
        try:
            await self.catalog.release_stock(order_id)
        except CatalogUnavailableError:
            log.warning("release deferred to the sweeper", extra={"fields": {"order": order_id}})
            return
        await self.repo.mark_released(order_id)

    # ------------------------------------------------------------ reads

    async def get_order(self, order_id: str) -> Order:
        order = await self.repo.get(order_id)
        if order is None or not order.visible:
            raise OrderNotFoundError(order_id)
        return order

    async def list_orders(self, q: ListOrders) -> tuple[list[Order], str]:
        size = q.page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument("page_size", f"must be 0 to {MAX_PAGE}")
        after = decode_cursor(q.page_token) if q.page_token else None
        orders = await self.repo.list_by_user(q.user_id, size + 1, after)
        page = orders[:size]
        token = encode_cursor(page[-1]) if len(orders) > size else ""
        return page, token

    # ------------------------------------------------------------ changes

    async def cancel_order(self, cmd: CancelOrder) -> Order:
        for _ in range(SAVE_ATTEMPTS):
            order = await self.get_order(cmd.order_id)
            if not order.cancel(cmd.reason, self.clock(), cmd.trace):
                if order.release_pending:
                    await self._release(order.id)
                return order
            if await self.repo.save(order):
                await self._release(order.id)
                order.release_pending = False
                return order
        raise Conflict(f"order {cmd.order_id} is changing, retry")

    async def update_status(self, cmd: UpdateOrderStatus) -> Order:
        for _ in range(SAVE_ATTEMPTS):
            order = await self.get_order(cmd.order_id)
            if not order.advance(cmd.status, self.clock(), cmd.trace):
                return order
            if await self.repo.save(order):
                return order
        raise Conflict(f"order {cmd.order_id} is changing, retry")

    # ------------------------------------------------------------ sweeper

    async def sweep(self, limit: int = 100) -> SweepReport:
        """Finish what crashed processes left: stale PENDING -> FAILED + release, retry
        pending releases, drop old tombstones. Safe to run in several processes."""
        now = self.clock()
        failed = released = deleted = 0
        for order in await self.repo.find_stale(
            [OrderStatus.PENDING], now - self.pending_timeout, limit
        ):
            if await self._abandon(order) is None:
                failed += 1
        for order in await self.repo.find_release_pending(now - dt.timedelta(seconds=5), limit):
            try:
                await self.catalog.release_stock(order.id)
            except CatalogUnavailableError:
                break  # the catalog is down: the next sweep retries
            await self.repo.mark_released(order.id)
            released += 1
        for order in await self.repo.find_stale(
            [OrderStatus.FAILED], now - self.tombstone_ttl, limit
        ):
            try:
                await self.catalog.release_stock(order.id)  # a racer may have reserved late
            except CatalogUnavailableError:
                break
            if await self.repo.delete_failed(order.id):
                deleted += 1
        return SweepReport(failed, released, deleted)
