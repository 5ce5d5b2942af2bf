"""The adapters' batching, without I/O: Lookups (short-lived cache, one call per id in flight,
a bound on calls) and GroupWriter (calls that arrive together share one flush)."""

from __future__ import annotations

import asyncio

import pytest

from services.notification.clients import Lookups
from services.notification.domain import DependencyUnavailableError
from services.notification.repository import GroupWriter


class Fetch:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()
        self.in_flight = self.widest = 0

    async def __call__(self, key: str) -> str:
        self.calls.append(key)
        self.in_flight += 1
        self.widest = max(self.widest, self.in_flight)
        await asyncio.sleep(0.002)
        self.in_flight -= 1
        if key in self.fail:
            raise DependencyUnavailableError(key)
        return key.upper()


async def test_concurrent_asks_for_one_id_make_one_call_and_later_asks_hit_the_cache():
    fetch = Fetch()
    lookups = Lookups(fetch, ttl_s=30)
    assert await asyncio.gather(*(lookups.get("u1") for _ in range(50))) == ["U1"] * 50
    assert await lookups.get("u1") == "U1"
    assert fetch.calls == ["u1"]


async def test_answers_expire_and_a_zero_ttl_keeps_nothing():
    fetch = Fetch()
    lookups = Lookups(fetch, ttl_s=0.01)
    await lookups.get("u1")
    await asyncio.sleep(0.03)
    await lookups.get("u1")
    assert fetch.calls == ["u1", "u1"]
    uncached = Lookups(fetch, ttl_s=0)
    await uncached.get("u2")
    await uncached.get("u2")
    assert fetch.calls[-2:] == ["u2", "u2"]


async def test_a_failure_reaches_every_asker_and_is_not_kept():
    fetch = Fetch(fail={"u1"})
    lookups = Lookups(fetch, ttl_s=30)
    results = await asyncio.gather(*(lookups.get("u1") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailableError) for r in results)
    fetch.fail.clear()
    assert await lookups.get("u1") == "U1"
    assert fetch.calls == ["u1", "u1"]


async def test_calls_in_flight_are_bounded():
    fetch = Fetch()
    lookups = Lookups(fetch, ttl_s=30, max_concurrent=4)
    await asyncio.gather(*(lookups.get(f"u{i}") for i in range(40)))
    assert len(fetch.calls) == 40 and fetch.widest == 4


async def test_one_asker_cancelled_does_not_cancel_the_call_the_others_wait_for():
    fetch = Fetch()
    lookups = Lookups(fetch, ttl_s=30)
    first = asyncio.ensure_future(lookups.get("u1"))
    second = asyncio.ensure_future(lookups.get("u1"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "U1"


class FetchMany:
    """A batch read: answers every key at once; keys in `missing` get a KeyError each."""

    def __init__(self, missing: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.missing = missing or set()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[str]) -> dict[str, str | Exception]:
        self.batches.append(list(keys))
        await asyncio.sleep(0.002)
        if self.fail is not None:
            raise self.fail
        return {k: KeyError(k) if k in self.missing else k.upper() for k in keys}


async def _unused(key: str) -> str:
    raise AssertionError("the single-key fetch is not used when fetch_many is given")


async def test_ids_asked_in_one_loop_turn_go_out_as_one_batch():
    many = FetchMany(missing={"gone"})
    lookups = Lookups(_unused, ttl_s=30, fetch_many=many)
    keys = [f"u{i % 40}" for i in range(100)] + ["gone"]
    results = await asyncio.gather(*(lookups.get(k) for k in keys), return_exceptions=True)
    assert results[:100] == [k.upper() for k in keys[:100]]
    assert isinstance(results[100], KeyError)  # only the missing one's asker fails
    assert len(many.batches) == 1 and sorted(many.batches[0]) == sorted({*keys})
    # Answers are cached (the missing one is not): a later turn asks only for what is new.
    assert await asyncio.gather(lookups.get("u1"), lookups.get("u77")) == ["U1", "U77"]
    assert many.batches[1] == ["u77"]
    assert lookups.calls == 2


async def test_askers_woken_together_after_an_await_share_a_batch():
    """As in the consumer: every record awaits its claim, then they all ask at once."""
    many = FetchMany()
    lookups = Lookups(_unused, ttl_s=30, fetch_many=many)
    claimed = asyncio.get_running_loop().create_future()

    async def record(i: int) -> str:
        await claimed
        return await lookups.get(f"u{i}")

    tasks = [asyncio.ensure_future(record(i)) for i in range(30)]
    await asyncio.sleep(0.001)
    claimed.set_result(None)
    assert await asyncio.gather(*tasks) == [f"U{i}" for i in range(30)]
    assert len(many.batches) == 1


async def test_batches_are_split_at_max_batch_and_a_failure_reaches_all_its_askers():
    many = FetchMany()
    lookups = Lookups(_unused, ttl_s=30, fetch_many=many, max_batch=10)
    await asyncio.gather(*(lookups.get(f"a{i}") for i in range(25)))
    assert [len(b) for b in many.batches] == [10, 10, 5]
    many.fail = DependencyUnavailableError("user service: UNAVAILABLE")
    results = await asyncio.gather(
        *(lookups.get(f"b{i}") for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, DependencyUnavailableError) for r in results)
    many.fail = None  # failures are not kept
    assert await lookups.get("b1") == "B1"


async def test_a_cancelled_batch_cancels_its_askers_instead_of_leaving_them_waiting():
    many = FetchMany()
    lookups = Lookups(_unused, ttl_s=30, fetch_many=many)
    asker = asyncio.ensure_future(lookups.get("u1"))
    await asyncio.sleep(0)
    assert lookups._flusher is not None
    lookups._flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asker, 1)


class Flush:
    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.fail_next = False
        self.running = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set: each flush waits for it

    async def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(items)
        self.running.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0.005)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database away")
        return [i * 10 for i in items]


async def test_items_submitted_together_share_one_flush_and_get_their_own_result():
    flush = Flush()
    writer = GroupWriter(flush, max_items=1000)
    assert await asyncio.gather(*(writer.submit(i) for i in range(200))) == [
        i * 10 for i in range(200)
    ]
    assert flush.groups == [list(range(200))]


async def test_items_arriving_during_a_flush_go_in_the_next_one_and_groups_are_capped():
    flush = Flush()
    flush.gate = asyncio.Event()
    writer = GroupWriter(flush, max_items=3)
    first = asyncio.gather(*(writer.submit(i) for i in range(5)))
    await flush.running.wait()  # the first flush is running
    later = asyncio.gather(*(writer.submit(i) for i in range(5, 7)))
    flush.gate.set()
    await asyncio.gather(first, later)
    assert flush.groups == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_flush_fails_its_callers_only():
    flush = Flush()
    writer = GroupWriter(flush, max_items=1000)
    flush.fail_next = True
    failed = await asyncio.gather(*(writer.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert await writer.submit(7) == 70


async def test_linger_gathers_items_that_arrive_one_by_one():
    flush = Flush()
    writer = GroupWriter(flush, max_items=1000, linger_s=0.5)

    async def trickle(i: int) -> int:
        await asyncio.sleep(i * 0.001)
        return await writer.submit(i)

    await asyncio.gather(*(trickle(i) for i in range(10)))
    assert flush.groups == [list(range(10))]


async def test_a_full_group_does_not_wait_for_the_linger():
    flush = Flush()
    writer = GroupWriter(flush, max_items=4, linger_s=10)
    await asyncio.wait_for(asyncio.gather(*(writer.submit(i) for i in range(4))), 1)
    assert flush.groups == [[0, 1, 2, 3]]


async def test_cancelling_the_writer_releases_its_waiting_callers():
    flush = Flush()
    writer = GroupWriter(flush, max_items=1000, linger_s=10)
    waiting = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0.01)
    assert writer._runner is not None
    writer._runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
