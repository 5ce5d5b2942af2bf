"""The generic runner: install what is missing, start in dependency order, wait for health,
report, stop. Knows nothing about any particular component (see components.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stack.install import apt_install
from stack.model import Apt, Component, Step, state_dir
from stack.procs import ProcessTable
from stack.shell import StackError, run_cmd, say

__all__ = ["Stack", "StackError", "run_cmd", "say"]


@dataclass
class Stack:
    components: list[Component]
    state: Path

    @classmethod
    def default(cls) -> Stack:
        from stack.components import COMPONENTS

        return cls(list(COMPONENTS), state_dir())

    @property
    def procs(self) -> ProcessTable:
        return ProcessTable(self.state)

    def by_name(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.components)
        raise StackError(name, f"unknown component (known: {known})")

    def select(self, only: Iterable[str] | None) -> list[Component]:
        """`only` plus its transitive dependencies, in dependency order. Names may be prefixes
        of component names (`postgres` selects postgres-primary and postgres-replica)."""
        names = [c.name for c in self.components]
        wanted: set[str] = set()
        if not only:
            wanted = set(names)
        else:
            for item in only:
                hits = [n for n in names if n == item or n.startswith(item + "-")]
                if not hits:
                    raise StackError(item, f"unknown component (known: {', '.join(names)})")
                wanted.update(hits)
        order: list[Component] = []
        seen: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in seen:
                return
            if name in path:
                raise StackError(name, f"dependency cycle: {' -> '.join((*path, name))}")
            comp = self.by_name(name)
            for dep in comp.depends_on:
                visit(dep, (*path, name))
            seen.add(name)
            order.append(comp)

        for n in names:
            if n in wanted:
                visit(n, ())
        return order

    # ------------------------------------------------------------------ install

    def install(self, comps: Sequence[Component]) -> None:
        apt_missing: list[str] = []
        for c in comps:
            for req in c.requires:
                if isinstance(req, Apt) and not req.present.exists():
                    apt_missing += [p for p in req.packages if p not in apt_missing]
        if apt_missing:
            t0 = time.monotonic()
            say(f"  install  apt: {' '.join(apt_missing)} ...")
            apt_install(apt_missing, self.state / "logs" / "install.log")
            say(f"  install  apt done in {time.monotonic() - t0:.1f}s")
        steps = [
            (c, r) for c in comps for r in c.requires if isinstance(r, Step) and not r.present()
        ]
        if not steps:
            return
        # mvn is network-bound, go build CPU-bound: overlap them instead of queueing.
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(self._install_step, c, s) for c, s in steps]
            for f in futures:
                f.result()

    def _install_step(self, comp: Component, step: Step) -> None:
        t0 = time.monotonic()
        say(f"  install  {comp.name}: {step.what} ...")
        log = self.state / "logs" / "install.log"
        rerun = "fix the cause and run `make up` again (finished steps are kept)"
        try:
            step.install()
        except StackError as exc:
            exc.message = f"install step '{step.what}' failed: {exc.message}"
            exc.hint = exc.hint or rerun
            raise
        except Exception as exc:
            # One line for the user (the first of the error's text); the rest is in the log.
            first = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
            raise StackError(
                comp.name,
                f"install step '{step.what}' failed: {first}",
                log=log if log.exists() else None,
                hint=rerun,
            ) from None
        if not step.present():
            raise StackError(
                comp.name, f"install step '{step.what}' left nothing behind", hint=rerun
            )
        say(f"  install  {comp.name}: {step.what} done in {time.monotonic() - t0:.1f}s")

    # ------------------------------------------------------------------ up

    def up(self, only: Iterable[str] | None = None) -> list[Component]:
        """Install, start and health-wait `only` (+deps). Returns the components now running."""
        t_all = time.monotonic()
        active = self.select(only)
        self.state.mkdir(parents=True, exist_ok=True)
        self.install(active)
        futures: dict[str, Future] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(active))) as pool:
            for c in active:
                deps = [futures[d] for d in c.depends_on if d in futures]
                futures[c.name] = pool.submit(self._start_after, c, deps)
            errors = []
            for name, fut in futures.items():
                try:
                    fut.result()
                except StackError as exc:
                    errors.append(exc)
                except Exception as exc:  # a bug in a hook: still no traceback wall
                    errors.append(StackError(name, f"{type(exc).__name__}: {exc}"))
        real = [e for e in errors if e.message != "dependency failed"]
        if real:
            raise real[0]
        say(f"stack up ({len(active)} components) in {time.monotonic() - t_all:.1f}s")
        return active

    def _start_after(self, comp: Component, deps: list[Future]) -> None:
        for d in deps:
            try:
                d.result()
            except Exception:
                raise StackError(comp.name, "dependency failed") from None
        self.start(comp)

    def start(self, comp: Component) -> None:
        """Start one component whose dependencies are up (idempotent)."""
        t0 = time.monotonic()
        procs = self.procs
        log = procs.log_path(comp.name)
        if procs.running(comp.name) and self._config_changed(comp) and self._reload(comp):
            return
        if procs.running(comp.name):
            if self._wait_healthy(comp, timeout=comp.start_timeout, require_ours=True):
                self._post_start(comp)  # converge: a topic or database added since last up
                say(f"  ok       {comp.name:<20} already running")
                return
            raise StackError(comp.name, "running but not healthy", log, _hint(comp))
        if comp.health():
            raise StackError(
                comp.name,
                f"something not started by this stack already answers {comp.health.description}",
                hint="stop that process or point this stack at other ports (env overrides)",
            )
        if comp.prepare:
            try:
                comp.prepare()
            except StackError:
                raise
            except Exception as exc:
                raise StackError(comp.name, f"prepare failed: {exc}", log) from exc
        argv = self._argv(comp)
        procs.spawn(comp.name, argv, comp.resolved_env(), comp.cwd, comp.user)
        self._record_config(comp)
        if not self._wait_healthy(comp, comp.start_timeout, require_ours=True):
            rec = procs.running(comp.name)
            why = "exited during startup" if rec is None else "did not become healthy"
            raise StackError(
                comp.name,
                f"{why} within {comp.start_timeout:.0f}s ({comp.health.description})",
                log,
                _hint(comp),
            )
        self._post_start(comp)
        info = f"  {comp.info()}" if comp.info else ""
        say(f"  started  {comp.name:<20} {time.monotonic() - t0:5.1f}s{info}")

    @staticmethod
    def _argv(comp: Component) -> list[str]:
        argv = [str(a) for a in comp.command()]
        if comp.needs_parent:
            argv = ["/bin/sh", "-c", '"$@" & wait $!', comp.name, *argv]
        return argv

    def _config_path(self, comp: Component) -> Path:
        return self.procs.run_dir / f"{comp.name}.config"

    def _config_changed(self, comp: Component) -> bool:
        if comp.config_digest is None:
            return False
        path = self._config_path(comp)
        return not path.exists() or path.read_text() != comp.config_digest()

    def _record_config(self, comp: Component) -> None:
        if comp.config_digest is not None:
            self._config_path(comp).write_text(comp.config_digest())

    def _reload(self, comp: Component) -> bool:
        """The config of a running process changed: signal it to reload in place (True), or
        stop it so start() runs it again with the new config (False)."""
        rec = self.procs.running(comp.name)
        if comp.reload_signal and rec is not None and rec.argv == self._argv(comp):
            os.kill(rec.pid, signal.Signals[comp.reload_signal])
            self._record_config(comp)
            if not self._wait_healthy(comp, comp.start_timeout, require_ours=True):
                log = self.procs.log_path(comp.name)
                raise StackError(comp.name, "not healthy after reload", log, _hint(comp))
            say(f"  reloaded {comp.name:<20} config changed")
            return True
        say(f"  restart  {comp.name:<20} config changed")
        self.stop(comp)
        return False

    def _post_start(self, comp: Component) -> None:
        if comp.post_start is None:
            return
        try:
            comp.post_start()
        except StackError:
            raise
        except Exception as exc:
            log = self.procs.log_path(comp.name)
            raise StackError(comp.name, f"post-start failed: {exc}", log) from exc

    def _wait_healthy(self, comp: Component, timeout: float, require_ours: bool) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if require_ours and self.procs.running(comp.name) is None:
                return False
            if comp.health():
                return True
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        return False

    # ------------------------------------------------------------------ down / status

    def stop(self, comp: Component) -> bool:
        return self.procs.stop(
            comp.name, comp.stop_signal, comp.stop_timeout, group=comp.signal_group
        )

    def down(self, only: Iterable[str] | None = None) -> None:
        # A subset stops exactly the named parts, never their dependencies others may use.
        comps = self.select(None)  # dependency order; stopped in reverse
        if only:
            names = {c.name for c in self.select(only)}
            comps = [c for c in comps if c.name in names and _named(c.name, only)]
        for c in reversed(comps):
            t0 = time.monotonic()
            if self.stop(c):
                say(f"  stopped  {c.name:<20} {time.monotonic() - t0:5.1f}s")

    def status(self) -> bool:
        all_ok = True
        total_rss = 0
        for c in self.components:
            rec = self.procs.running(c.name)
            if rec is None:
                all_ok = False
                say(f"  {'-':<3} {c.name:<20} stopped")
                continue
            healthy = c.health()
            all_ok &= healthy
            info = f"  {c.info()}" if c.info else ""
            mark = "ok" if healthy else "BAD"
            rss = rec.rss_bytes()
            total_rss += rss
            say(f"  {mark:<3} {c.name:<20} pid {rec.pid:<7} {rss >> 20:>4} MiB{info}")
        say(f"  total RSS {total_rss >> 20} MiB (state {self.state})")
        return all_ok


def _named(name: str, only: Iterable[str]) -> bool:
    return any(name == o or name.startswith(o + "-") for o in only)


def _hint(comp: Component) -> str:
    return (
        f"see `python -m stack logs {comp.name}`; a stale data dir can be wiped under {state_dir()}"
    )
