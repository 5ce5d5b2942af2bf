"""The runtime's periodic task (`every`): runs its job each period, logs a failing run and
tries again at the next period, and hands each result to `on_result`."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.runtime.server import every


async def test_a_failing_run_is_logged_and_the_next_period_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    seen: list[int] = []
    four = asyncio.Event()

    async def job() -> int:
        runs.append(len(runs))
        if len(runs) == 4:
            four.set()
        if len(runs) == 2:
            raise ConnectionError("store away")
        return len(runs)

    task = asyncio.create_task(every(0.01, job, "test job", on_result=seen.append)())
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(four.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[:2] == [1, 3]  # the second run failed; its result never reached on_result
    assert any(r.getMessage() == "test job failed" for r in caplog.records)
