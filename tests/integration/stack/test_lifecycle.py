"""Runner lifecycle on a private state dir: idempotent up, down leaves nothing behind,
stubborn processes are killed, failures report the log. Never touches the shared stack."""

import os
import sys
import time

import pytest

from stack.components import smtp_sink
from stack.model import Component, Tcp
from stack.runner import Stack, StackError

pytestmark = pytest.mark.stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and _alive(int(entry)):
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _listener(name: str, port: int, ignore_term: bool = False, children: int = 0) -> Component:
    """A TCP server in Python, optionally ignoring SIGTERM and forking sleeping children."""
    code = (
        "import signal, socket, subprocess, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + f"kids = [subprocess.Popen(['sleep', '600']) for _ in range({children})]\n"
        + "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        + f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        + "time.sleep(600)\n"
    )
    return Component(
        name=name, command=lambda: [sys.executable, "-c", code], health=Tcp(port), stop_timeout=2
    )


def test_up_is_idempotent_and_down_stops_the_whole_group(tmp_path, free_ports):
    smtp_port, http_port, port = free_ports(3)
    private = Stack(
        [
            smtp_sink(smtp_port, http_port, tmp_path / "mail"),
            _listener("forker", port, children=2),
        ],
        tmp_path,
    )
    private.up()
    pids = {c.name: private.procs.running(c.name).pid for c in private.components}
    assert len(_group(pids["forker"])) == 3  # leader + 2 children
    private.up()  # second up: same processes, nothing restarted
    assert {c.name: private.procs.running(c.name).pid for c in private.components} == pids
    private.down()
    for pid in pids.values():
        assert not _alive(pid)
        assert _group(pid) == []
    assert list((tmp_path / "run").glob("*.pid")) == []


def test_down_kills_a_process_that_ignores_sigterm(tmp_path, free_ports):
    (port,) = free_ports(1)
    private = Stack([_listener("stubborn", port, ignore_term=True)], tmp_path)
    private.up()
    pid = private.procs.running("stubborn").pid
    t0 = time.monotonic()
    private.down()
    assert not _alive(pid)
    assert time.monotonic() - t0 < 10


def test_down_never_signals_a_process_it_did_not_start(tmp_path, free_ports):
    """A pid file pointing at a foreign process (recycled pid) must be ignored."""
    (port,) = free_ports(1)
    private = Stack([_listener("x", port)], tmp_path)
    (tmp_path / "run").mkdir()
    # Our own pid, but with a start time that is not ours: looks like a recycled pid.
    (tmp_path / "run" / "x.pid").write_text(
        f'{{"pid": {os.getpid()}, "start_ticks": 1, "argv": ["x"]}}'
    )
    private.down()
    assert _alive(os.getpid())


def test_failed_start_reports_the_log_tail(tmp_path, free_ports):
    (port,) = free_ports(1)
    broken = Component(
        name="broken",
        command=lambda: [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        health=Tcp(port),
        start_timeout=5,
    )
    with pytest.raises(StackError) as err:
        Stack([broken], tmp_path).up()
    text = err.value.render()
    assert "exited during startup" in text
    assert "boom: bad config" in text
    assert "hint:" in text


def test_kill9_then_start_recovers(tmp_path, free_ports):
    (port,) = free_ports(1)
    private = Stack([_listener("crashy", port)], tmp_path)
    private.up()
    first = private.procs.running("crashy").pid
    assert private.procs.kill9("crashy")
    assert private.procs.running("crashy") is None
    private.start(private.by_name("crashy"))
    second = private.procs.running("crashy").pid
    assert second != first and private.by_name("crashy").health()
    private.down()


def _reloadable(name: str, port: int, config, marks, signal_name: str | None) -> Component:
    """A TCP server whose config digest is the text of `config`; it appends 'hup' to `marks`
    on SIGHUP (how NGINX and Prometheus re-read their config)."""
    code = (
        "import signal, socket, time\n"
        f"signal.signal(signal.SIGHUP, lambda *a: open({str(marks)!r}, 'a').write('hup\\n'))\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "while True: time.sleep(1)\n"
    )
    return Component(
        name=name,
        command=lambda: [sys.executable, "-c", code],
        health=Tcp(port),
        stop_timeout=2,
        config_digest=lambda: config.read_text(),
        reload_signal=signal_name,
    )


def test_changed_config_reloads_in_place_or_restarts(tmp_path, free_ports):
    """`make up` after a config change (e.g. regenerated mesh/out): a part with a reload
    signal (NGINX, Prometheus) gets it and keeps its pid; one without (Envoy) restarts."""
    p1, p2 = free_ports(2)
    config, marks = tmp_path / "config.txt", tmp_path / "marks.txt"
    config.write_text("v1")
    private = Stack(
        [
            _reloadable("hup", p1, config, marks, "SIGHUP"),
            _reloadable("restart", p2, config, tmp_path / "unused.txt", None),
        ],
        tmp_path,
    )
    try:
        private.up()
        pids = {n: private.procs.running(n).pid for n in ("hup", "restart")}
        private.up()  # unchanged config: nothing signalled or restarted
        assert {n: private.procs.running(n).pid for n in pids} == pids
        assert not marks.exists()

        config.write_text("v2")
        private.up()
        assert private.procs.running("hup").pid == pids["hup"]
        deadline = time.monotonic() + 5
        while not marks.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marks.read_text().splitlines() == ["hup"]
        assert private.procs.running("restart").pid != pids["restart"]
        assert not _alive(pids["restart"])
    finally:
        private.down()
