"""PostgreSQL notification log: one row per event id (unique), mapped to domain.LogEntry.

A claim inserts the row, or locks the existing one and applies the domain's decide_claim
rule, in one transaction, so two workers can never both own an event.

Writes are grouped (group commit): the consumer works on a whole poll of records at once,
so claims and outcome marks arrive together; the calls made while one group's statement
runs go out in the next one. A poll's claims are one INSERT ... ON CONFLICT DO NOTHING
RETURNING (plus, only for events seen before, one SELECT ... FOR UPDATE and one UPDATE), and
its marks a few UPDATE ... FROM unnest(...), instead of two commits per email.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.domain import Claim, Kind, LogEntry, LogStatus, decide_claim

# A unit-of-work factory: `write()` opens a primary transaction (commit on clean exit),
# `read()` a connection that may be the replica.
ConnectionFactory = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

SCHEMA = (
    # Serialise concurrent starts: CREATE ... IF NOT EXISTS is not race-free in PostgreSQL.
    "SELECT pg_advisory_xact_lock(54054)",
    """
    CREATE TABLE IF NOT EXISTS notification_log (
        id          uuid PRIMARY KEY,
        event_id    text NOT NULL UNIQUE,
        kind        text NOT NULL,
        user_id     text NOT NULL,
        order_id    text NOT NULL DEFAULT '',
        status      text NOT NULL,
        recipient   text NOT NULL DEFAULT '',
        subject     text NOT NULL DEFAULT '',
        attempts    integer NOT NULL DEFAULT 1,
        error       text NOT NULL DEFAULT '',
        claimed_at  timestamptz NOT NULL,
        sent_at     timestamptz,
        created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS notification_log_by_user
        ON notification_log (user_id, created_at DESC, id DESC)
    """,
)

_COLUMNS = (
    "id, event_id, kind, user_id, order_id, status, recipient, subject, attempts, "
    "claimed_at, created_at"
)


def _entry(row: Any) -> LogEntry:
    return LogEntry(
        id=str(row.id),
        event_id=row.event_id,
        kind=Kind(row.kind),
        user_id=row.user_id,
        order_id=row.order_id,
        status=LogStatus(row.status),
        recipient=row.recipient,
        subject=row.subject,
        attempts=row.attempts,
        claimed_at=row.claimed_at,
        created_at=row.created_at,
    )


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupWriter(Generic[ItemT, ResultT]):
    """Runs `flush(items)` for every item submitted while the previous flush ran (or in the
    same turn of the event loop, or within `linger_s` of the first waiting item), and hands
    each caller its own result. A failed flush fails every caller in it; the next flush
    starts afresh."""

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]],
        max_items: int,
        linger_s: float = 0.0,
    ) -> None:
        self._flush = flush
        self._max = max_items
        self._linger = linger_s
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._full = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max:
            self._full.set()
        if self._runner is None:
            # A task, so it first runs after every caller now ready has queued its item; in
            # a context of its own, as it writes for many callers (traces), not the first.
            self._runner = loop.create_task(self._run(), context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        group: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        try:
            while self._pending:
                if self._linger > 0 and len(self._pending) < self._max:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._linger)
                group, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    results = await self._flush([item for item, _ in group])
                except Exception as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():  # a cancelled caller
                        future.set_result(result)
        finally:
            self._runner = None
            # Cancelled (shutdown): nobody may wait forever on an unwritten item.
            for _, future in [*group, *self._pending]:
                if not future.done():
                    future.cancel()
            self._pending = []


@dataclass(frozen=True)
class _ClaimRequest:
    event_id: str
    kind: Kind
    user_id: str
    order_id: str
    now: datetime
    stale_after: timedelta


@dataclass(frozen=True)
class _Mark:
    """A log row's new status, and the columns that change with it (None: unchanged)."""

    event_id: str
    status: LogStatus
    sent_at: datetime | None = None
    error: str | None = None
    recipient: str | None = None
    subject: str | None = None


_INSERT_CLAIMS = text(
    "INSERT INTO notification_log (id, event_id, kind, user_id, order_id, status, claimed_at)"
    " SELECT u.id, u.event_id, u.kind, u.user_id, u.order_id, :status, u.now"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:event_ids AS text[]), CAST(:kinds AS text[]),"
    " CAST(:user_ids AS text[]), CAST(:order_ids AS text[]), CAST(:nows AS timestamptz[]))"
    " AS u(id, event_id, kind, user_id, order_id, now)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_LOCK_SEEN = text(
    f"SELECT {_COLUMNS} FROM notification_log"
    " WHERE event_id = ANY(CAST(:event_ids AS text[])) ORDER BY event_id FOR UPDATE"
)
_RECLAIM = text(
    "UPDATE notification_log AS l SET status = :status, claimed_at = u.now,"
    " attempts = l.attempts + 1, error = ''"
    " FROM unnest(CAST(:event_ids AS text[]), CAST(:nows AS timestamptz[])) AS u(event_id, now)"
    " WHERE l.event_id = u.event_id"
)
_MARK = text(
    "UPDATE notification_log AS l SET status = u.status,"
    " sent_at = COALESCE(u.sent_at, l.sent_at), error = COALESCE(u.error, l.error),"
    " recipient = COALESCE(u.recipient, l.recipient), subject = COALESCE(u.subject, l.subject)"
    " FROM unnest(CAST(:event_ids AS text[]), CAST(:statuses AS text[]),"
    " CAST(:sent_ats AS timestamptz[]), CAST(:errors AS text[]), CAST(:recipients AS text[]),"
    " CAST(:subjects AS text[])) AS u(event_id, status, sent_at, error, recipient, subject)"
    " WHERE l.event_id = u.event_id"
)


class PgNotificationLog:
    """`write` opens a transaction; `statement` (default: `write`) a connection for one
    statement, which needs no transaction of its own (an autocommit connection saves the
    BEGIN and COMMIT round trips). Marks linger `mark_linger_s` so more share a statement."""

    def __init__(
        self,
        write: ConnectionFactory,
        read: ConnectionFactory | None = None,
        *,
        statement: ConnectionFactory | None = None,
        max_group: int = 1000,
        mark_linger_s: float = 0.0,
    ) -> None:
        self._write = write
        self._read = read or write
        self._statement = statement or write
        self._claims = GroupWriter(self._claim_group, max_group)
        self._marks = GroupWriter(self._mark_group, max_group, mark_linger_s)

    async def create_schema(self) -> None:
        async with self._write() as conn:
            for stmt in SCHEMA:
                await conn.execute(text(stmt))

    async def claim(
        self,
        event_id: str,
        kind: Kind,
        user_id: str,
        order_id: str,
        now: datetime,
        stale_after: timedelta,
    ) -> Claim:
        return await self._claims.submit(
            _ClaimRequest(event_id, kind, user_id, order_id, now, stale_after)
        )

    async def _claim_group(self, group: list[_ClaimRequest]) -> list[Claim]:
        # Rows in event id order: two workers claiming overlapping groups lock them in the
        # same order, so they wait for each other instead of deadlocking.
        ordered = sorted(group, key=lambda r: r.event_id)
        async with self._statement() as conn:
            inserted = await conn.execute(
                _INSERT_CLAIMS,
                {
                    "status": LogStatus.SENDING.value,
                    "ids": [uuid.uuid4() for _ in ordered],
                    "event_ids": [r.event_id for r in ordered],
                    "kinds": [r.kind.value for r in ordered],
                    "user_ids": [r.user_id for r in ordered],
                    "order_ids": [r.order_id for r in ordered],
                    "nows": [r.now for r in ordered],
                },
            )
            new = {row.event_id for row in inserted}
        decisions: list[Claim | None] = []
        for r in group:
            # One CLAIMED per event id, also when a group holds the same event twice.
            decisions.append(Claim.CLAIMED if r.event_id in new else None)
            new.discard(r.event_id)
        seen = sorted({r.event_id for r, d in zip(group, decisions, strict=True) if d is None})
        if not seen:
            return decisions  # type: ignore[return-value]
        async with self._write() as conn:
            # Events logged before (redelivery, replay, a retry): lock their rows and let
            # the domain decide; a stale or released claim is taken over.
            rows = await conn.execute(_LOCK_SEEN, {"event_ids": seen})
            entries = {row.event_id: _entry(row) for row in rows}
            reclaim: dict[str, datetime] = {}
            for i, r in enumerate(group):
                if decisions[i] is not None:
                    continue
                entry = entries[r.event_id]
                decision = decide_claim(entry, r.now, r.stale_after)
                if decision is Claim.CLAIMED:
                    reclaim[r.event_id] = r.now
                    # The next request for this event in the group sees our fresh claim.
                    entries[r.event_id] = LogEntry(
                        event_id=r.event_id, status=LogStatus.SENDING, claimed_at=r.now
                    )
                decisions[i] = decision
            if reclaim:
                await conn.execute(
                    _RECLAIM,
                    {
                        "status": LogStatus.SENDING.value,
                        "event_ids": list(reclaim),
                        "nows": list(reclaim.values()),
                    },
                )
            return decisions  # type: ignore[return-value]

    async def _mark_group(self, group: list[_Mark]) -> list[None]:
        last = {m.event_id: m for m in group}  # one row per event: the last word wins
        marks = list(last.values())
        async with self._statement() as conn:
            await conn.execute(
                _MARK,
                {
                    "event_ids": [m.event_id for m in marks],
                    "statuses": [m.status.value for m in marks],
                    "sent_ats": [m.sent_at for m in marks],
                    "errors": [m.error for m in marks],
                    "recipients": [m.recipient for m in marks],
                    "subjects": [m.subject for m in marks],
                },
            )
        return [None] * len(group)

    async def mark_sent(self, event_id: str, now: datetime, recipient: str, subject: str) -> None:
        await self._marks.submit(_Mark(event_id, LogStatus.SENT, now, None, recipient, subject))

    async def release(self, event_id: str, error: str) -> None:
        await self._marks.submit(_Mark(event_id, LogStatus.RETRYING, error=error[:500]))

    async def mark_failed(
        self, event_id: str, error: str, recipient: str = "", subject: str = ""
    ) -> None:
        await self._marks.submit(
            _Mark(event_id, LogStatus.FAILED, None, error[:500], recipient, subject)
        )

    async def list_for_user(
        self, user_id: str, limit: int, before: tuple[datetime, str] | None
    ) -> list[LogEntry]:
        where = "user_id = :user_id"
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        if before is not None:
            where += " AND (created_at, id) < (:before_at, :before_id)"
            params |= {"before_at": before[0], "before_id": uuid.UUID(before[1])}
        async with self._read() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM notification_log WHERE {where}"
                    " ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                params,
            )
            return [_entry(r) for r in rows]

    async def get(self, event_id: str) -> LogEntry | None:
        async with self._write() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS} FROM notification_log WHERE event_id = :e"),
                    {"e": event_id},
                )
            ).first()
            return _entry(row) if row is not None else None
