"""`.ci/run` against a fake `make` on PATH: a run that collected no tests (pytest's exit
status 5, which make reports as "Error 5" and its own status 2) fails with a clear message,
other failures keep their status, and `make down` runs whatever the outcome."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Mimics GNU make: a failing recipe's status is printed as "Error N", make exits 2.
FAKE_MAKE = """#!/usr/bin/env bash
echo "$1" >> "$CALLS"
if [ "$1" = test ] && [ "$PYTEST_STATUS" != 0 ]; then
  echo "pytest: status $PYTEST_STATUS"
  echo "make: *** [Makefile:41: test] Error $PYTEST_STATUS" >&2
  exit 2
fi
"""


def _ci(tmp_path: Path, pytest_status: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "PYTEST_STATUS": str(pytest_status),
    }
    done = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    return done, calls.read_text().split()


def test_ci_passes_when_the_tests_pass_and_stops_the_servers(tmp_path: Path) -> None:
    done, calls = _ci(tmp_path, 0)
    assert done.returncode == 0, done.stderr
    assert "ci: done in" in done.stdout
    assert calls == ["install", "lint", "test", "down"]


def test_ci_fails_when_no_test_was_collected(tmp_path: Path) -> None:
    done, calls = _ci(tmp_path, 5)
    assert done.returncode == 5
    assert "pytest collected no tests" in done.stderr
    assert "ci: done" not in done.stdout
    assert calls[-1] == "down"


@pytest.mark.parametrize("pytest_status", [1, 2])
def test_ci_propagates_other_test_failures(tmp_path: Path, pytest_status: int) -> None:
    done, calls = _ci(tmp_path, pytest_status)
    assert done.returncode == 2  # make's own status for a failed recipe
    assert "collected no tests" not in done.stderr
    assert "ci: make test failed (status 2)" in done.stderr
    assert calls == ["install", "lint", "test", "down"]
