"""Reliability suite: the same tests run short under `make test` and long under `make soak`
(SHOPMESH_SOAK=1, see harness.Scale). Every test records its figures in harness.FIGURES;
at the end of the session report.py writes them to bench/results/reliability.json (both
runs, under "short" / "soak") and, for the soak run, regenerates REPORT.md."""

from __future__ import annotations

import httpx
import pytest

from tests.reliability import report
from tests.reliability.harness import FIGURES, PORTS, Stubs


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/reliability/" not in report.nodeid:
        return
    if report.when == "call" or report.outcome != "passed":
        name = report.nodeid.split("::", 1)[-1]
        FIGURES.tests[name] = report.outcome
        if report.failed:
            text = str(report.longrepr.reprcrash.message) if report.longrepr else "failed"  # type: ignore[union-attr]
            FIGURES.failures[name] = text.splitlines()[0][:300] if text else "failed"
        elif report.skipped and isinstance(report.longrepr, tuple):
            FIGURES.failures[name] = f"skipped: {report.longrepr[2]}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FIGURES.tests:
        report.write(FIGURES)


# ---------------------------------------------------------------- the security tests' fixtures


@pytest.fixture(scope="module")
def up(stack):
    return stack.require("nginx", *PORTS)  # every service it calls


@pytest.fixture
async def stubs(up):
    s = Stubs()
    yield s
    s.close()


@pytest.fixture
async def gw(up):
    async with httpx.AsyncClient(base_url=up.nginx_url, timeout=15) as c:
        yield c
