"""The storefront's own checks, run by `make test`: TypeScript type check (app, tests and
the generated clients it imports) and the Vitest unit/component suite (cart, error
mapping, checkout double-click guard, Money formatting, auth refresh interceptor, live order
status with fake timers, an admin's product edit, the ops page over a fake Prometheus)."""

from __future__ import annotations

import json
import subprocess

from stack.frontend import FRONTEND, ensure_node_modules

BIN = FRONTEND / "node_modules" / ".bin"


def test_typescript_compiles() -> None:
    ensure_node_modules()
    done = subprocess.run(
        [str(BIN / "tsc"), "-b"], cwd=FRONTEND, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_vitest_suite_passes(tmp_path) -> None:
    ensure_node_modules()
    out = tmp_path / "vitest.json"
    done = subprocess.run(
        [str(BIN / "vitest"), "run", "--reporter=json", f"--outputFile={out}"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = [
        f"{t['fullName']}: {' '.join(t.get('failureMessages', []))[:500]}"
        for suite in report["testResults"]
        for t in suite["assertionResults"]
        if t["status"] != "passed"
    ]
    assert not failed, "\n".join(failed)
    # A floor, so a broken glob or config cannot pass by running nothing.
    assert report["numPassedTests"] >= 30, report["numPassedTests"]
    assert done.returncode == 0, done.stderr[-3000:]
