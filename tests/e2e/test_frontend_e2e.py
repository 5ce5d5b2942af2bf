"""Storefront end to end: Chromium (Debian's, driven by playwright-core) against the real
stack through NGINX -> Envoy -> services. The scenarios live in frontend/e2e/run.mjs; this
module brings the stack up, runs them once, and reports each as its own test.

Every service is started first; one that fails to start fails the scenarios that need it
with its start error, and every scenario must pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stack.model import REPO_ROOT
from stack.testing import StackHandle

FRONTEND = REPO_ROOT / "frontend"
CHROMIUM = Path(os.environ.get("SHOPMESH_CHROMIUM", "/usr/bin/chromium"))
SERVICES = [
    "product", "user", "auth", "order", "notification", "cart", "currency", "shipping",
    "recommendation",
]  # fmt: skip
# Behind the ops page (through NGINX's admin-only proxy); started like a service above.
OBSERVABILITY = ["prometheus"]
SCENARIOS = [
    "shell",
    "browse",
    "search",
    "cart",
    "currency",
    "recommendations",
    "signup",
    "logout-login",
    "server-cart",
    "quote",
    "checkout",
    "order-confirmed",
    "order-currency",
    "email",
    "other-user-refused",
    "phone-width",
    "contrast",
    "keyboard",
    "admin",
    "admin-edit",
    "ops-admin",
]

# Stack up (first run: builds) plus the browser run exceed the default 300 s per test.
pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def e2e_report(stack: StackHandle) -> dict:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the storefront needs Node.js 20.19+")
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(FRONTEND / "e2e" / "install-chromium.sh")], check=True)
    # frontend: npm ci + vite build when stale. NGINX, the SPA and the SMTP sink must come up.
    stack.require("frontend", "nginx", "smtp-sink")
    # Services one by one: one that fails to start is recorded, and the scenarios needing
    # it fail with its error below.
    start_errors: dict[str, str] = {}
    for name in SERVICES + OBSERVABILITY:
        try:
            stack.require(name)
        except RuntimeError as exc:
            # The runner's message ends with the component's log tail: keep the end.
            start_errors[name] = str(exc)[-600:]
    # The sink was required above: it is never a reason to skip the email scenario.
    up = [name for name in SERVICES + OBSERVABILITY if stack.healthy(name)] + ["smtp-sink"]
    done = subprocess.run(
        ["node", "e2e/run.mjs"],
        cwd=FRONTEND,
        env={**os.environ, "E2E_SERVICES": ",".join(up)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"e2e runner printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(lines[-1])
    crashed = report.get("crashed")
    assert crashed is None, f"e2e runner crashed: {crashed}\n{done.stderr[-3000:]}"
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report["start_errors"] = start_errors
    return report


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_storefront(e2e_report: dict, scenario: str) -> None:
    results = {r["name"]: r for r in e2e_report["results"]}
    assert scenario in results, f"scenario {scenario} did not run at all"
    result = results[scenario]
    # The runner skips a scenario whose services are not up: every service exists, so a
    # skip means one would not start.
    assert result["status"] != "skipped", (
        f"{scenario}: {result['reason']}; start errors: {e2e_report['start_errors']}"
    )
    assert result["status"] == "passed", f"{scenario} ({result['about']}): {result.get('error')}"
