"""Process bookkeeping: spawn in a new process group, pid files, liveness, stop.

A pid file records the pid *and* its kernel start time, so a recycled pid is never taken
for ours and `down` can never signal a stranger's process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); split after the ')' that closes the command name.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int
    argv: list[str]

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks and not _is_zombie(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the whole process group (leader and children)."""
        total = 0
        for pid in {self.pid, *self.group_members()}:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def group_members(self) -> list[int]:
        """Live pids still in our process group (children that outlived the leader)."""
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) == self.pid and not _is_zombie(int(entry.name)):
                    members.append(int(entry.name))
            except OSError:
                continue
        return members


class ProcessTable:
    """Pid files and logs of one state dir."""

    def __init__(self, state: Path) -> None:
        self.run_dir = state / "run"
        self.log_dir = state / "logs"

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def read(self, name: str) -> PidRecord | None:
        try:
            data = json.loads(self.pid_path(name).read_text())
            return PidRecord(data["pid"], data["start_ticks"], data["argv"])
        except (OSError, ValueError, KeyError):
            return None

    def running(self, name: str) -> PidRecord | None:
        rec = self.read(name)
        return rec if rec and rec.alive() else None

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path | None = None,
        user: str | None = None,
    ) -> PidRecord:
        _reap_all()  # a zombie child of ours may still own a port or a lock file
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name).open("ab")
        log.write(f"\n=== {time.strftime('%F %T')} start: {' '.join(argv)}\n".encode())
        log.flush()
        kwargs: dict = {}
        if user and os.geteuid() == 0:
            kwargs.update(user=user, group=user, extra_groups=[])
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,  # own process group: `down` stops the whole tree
            close_fds=True,
            **kwargs,
        )
        log.close()
        ticks = _start_ticks(proc.pid)
        rec = PidRecord(proc.pid, ticks or 0, argv)
        self.pid_path(name).write_text(json.dumps(rec.__dict__))
        # Reap the child if it dies while we are still the parent (avoids zombies in `up`).
        _CHILDREN[proc.pid] = proc
        return rec

    def stop(
        self, name: str, sig: str = "SIGTERM", timeout: float = 15.0, group: bool = True
    ) -> bool:
        """Stop our process (and its group). Returns False if nothing of ours was running."""
        rec = self.running(name)
        if rec is None:
            self.pid_path(name).unlink(missing_ok=True)
            return False
        signum = signal.Signals[sig]
        try:
            if group:
                os.killpg(rec.pid, signum)
            else:
                os.kill(rec.pid, signum)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and rec.alive():
            _reap(rec.pid)
            time.sleep(0.1)
        if rec.alive() or rec.group_members():
            # Graceful stop timed out (or children lingered): kill the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (rec.alive() or rec.group_members()):
                _reap(rec.pid)
                time.sleep(0.05)
        _reap(rec.pid)
        self.pid_path(name).unlink(missing_ok=True)
        return True

    def kill9(self, name: str) -> bool:
        """Crash a component (reliability tests): SIGKILL its group, leave the pid file."""
        rec = self.running(name)
        if rec is None:
            return False
        os.killpg(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (rec.alive() or rec.group_members()):
            _reap(rec.pid)
            time.sleep(0.05)
        # If we are the parent, reap now: a zombie postmaster still "holds" postmaster.pid.
        _reap(rec.pid)
        return True


_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def _reap_all() -> None:
    for pid in list(_CHILDREN):
        _reap(pid)


def tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])
