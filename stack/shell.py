"""Running a command for the stack and reporting: StackError (a component, what failed,
where its log is, what to try), one line per step on stdout, commands logged to a file."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from stack.procs import tail


class StackError(Exception):
    """A component failed; carries a human message, never shown as a traceback."""

    def __init__(self, component: str, message: str, log: Path | None = None, hint: str = ""):
        super().__init__(message)
        self.component = component
        self.message = message
        self.log = log
        self.hint = hint

    def render(self) -> str:
        parts = [f"FAILED {self.component}: {self.message}"]
        if self.log is not None:
            parts.append(f"--- last lines of {self.log} ---\n{tail(self.log)}\n---")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def run_cmd(argv: Sequence[str], what: str, log: Path | None = None, **kw) -> None:
    """Run an install/setup command; on failure raise StackError with its output."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        raise StackError(what, f"`{' '.join(argv)}` exited {proc.returncode}:\n" + "\n".join(out))
