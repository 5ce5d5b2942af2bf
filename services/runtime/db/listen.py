"""LISTEN on one channel of the primary over a dedicated asyncpg connection, for a cache that
must drop what any process (this one, another worker, another instance) changed.

The listener tells its `ChangeSink` four things:

- `changed(payload)`: a notification arrived (the writing transaction has committed);
- `fenced(lsn)`: every notification delivered so far belongs to a commit at or before
  `lsn` (the primary's WAL position, asked after they arrived). A read that has seen `lsn`
  (the replica replayed it, or the primary served it) sees all of those writes, so a cache
  may store what such a read returns;
- `lost()`: the connection is gone: notifications may be missed from now on, so the cache
  must flush and stop answering (called from asyncpg's termination callback, at once);
- `listening(lsn)`: LISTEN is in place again and nothing committed after `lsn` can be
  missed; everything committed before it may have been, so the cache starts empty and
  stores only reads that have seen `lsn`.

`fenced` and `listening` are only reported when no notification arrived while the LSN
query was in flight: the server may deliver one just before the query's reply for a commit
that came after the query read the WAL position, so such a round is repeated.

Between notifications the connection is pinged every `ping_s` (a half-open TCP connection
would otherwise look alive forever); a failed or slow ping counts as lost. Reconnects back
off from `retry_s` up to 2 s. Each process (worker) has its own listener: PostgreSQL sends
every notification to every listening connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import asyncpg

from services.runtime.context import parse_lsn
from services.runtime.db.config import DatabaseConfig

log = logging.getLogger("services.runtime.db")

_WAL_LSN = "SELECT pg_current_wal_lsn()::text"


class ChangeSink(Protocol):
    def changed(self, payload: str) -> None: ...

    def fenced(self, lsn: int) -> None: ...

    def lost(self) -> None: ...

    def listening(self, lsn: int) -> None: ...


class ChangeListener:
    """A resource (open/close/health_checks) feeding one ChangeSink from one channel."""

    def __init__(
        self,
        config: DatabaseConfig,
        channel: str,
        sink: ChangeSink,
        service: str,
        *,
        ping_s: float = 1.0,
        retry_s: float = 0.1,
    ) -> None:
        self.config = config
        self.channel = channel
        self.sink = sink
        self.service = service
        self.ping_s = ping_s
        self.retry_s = retry_s
        self.listening = False
        self.losses = 0  # connections lost since start (after listening at least once)
        self.backend_pid = 0  # the PostgreSQL backend of the current connection
        self._seen = 0  # notifications received
        self._fenced_at = 0  # value of _seen covered by the last fenced()/listening()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()  # set at the first LISTEN
        self._delay = retry_s
        self._closing = False
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start listening; waits (up to the connect timeout) for the first LISTEN, so a
        service starts with its cache on unless the primary is unreachable."""
        self._task = asyncio.ensure_future(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.config.connect_timeout_s * 2)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    def health_checks(self) -> dict[str, tuple[Any, bool]]:
        """Not required: without the listener the service still answers (uncached)."""
        return {f"postgres/{self.config.name}:listen {self.channel}": (self._check, False)}

    async def _check(self) -> bool:
        return self.listening

    # ------------------------------------------------------------ connection

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._seen += 1
        self.sink.changed(payload)
        self._wake.set()

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost()
            self._wake.set()

    def _lost(self) -> None:
        """Tell the sink once per connection that was listening (later calls: no-op)."""
        if not self.listening:
            return
        self.listening = False
        if not self._closing:
            self.losses += 1
            log.warning(
                "change listener lost, cache bypassed until it is back",
                extra={"fields": {"channel": self.channel, "database": self.config.name}},
            )
        self.sink.lost()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _wal_lsn(self, conn: asyncpg.Connection) -> int | None:
        """The primary's WAL position, or None if a notification arrived meanwhile."""
        before = self._seen
        lsn = await asyncio.wait_for(conn.fetchval(_WAL_LSN), self.config.connect_timeout_s)
        if self._seen != before:
            return None
        self._fenced_at = before
        return parse_lsn(lsn)

    async def _run(self) -> None:
        self._delay = self.retry_s
        while True:
            try:
                await self._serve()
            except asyncio.CancelledError:
                self._lost()
                raise
            except Exception as exc:  # connect refused, killed backend, ping timeout...
                log.info(
                    "change listener: %s",
                    type(exc).__name__,
                    extra={"fields": {"channel": self.channel, "error": str(exc)[:200]}},
                )
            self._lost()
            self._drop()
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, 2.0)

    async def _serve(self) -> None:
        conn = await asyncpg.connect(**self.config.connect_kwargs(False, f"{self.service}:listen"))
        self._conn = conn
        self.backend_pid = conn.get_server_pid()
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(self.channel, self._on_notify)
        lsn = None
        while lsn is None:
            lsn = await self._wal_lsn(conn)
        self.listening = True
        self._delay = self.retry_s  # a connection that worked: retry soon when it drops
        self.sink.listening(lsn)
        self._ready.set()
        log.info("change listener listening", extra={"fields": {"channel": self.channel}})
        while True:
            if self._seen == self._fenced_at:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.ping_s)
            if conn.is_closed():
                raise ConnectionError("listener connection closed")
            if self._seen != self._fenced_at:
                lsn = await self._wal_lsn(conn)
                if lsn is not None:
                    self.sink.fenced(lsn)
            else:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self.config.connect_timeout_s)
