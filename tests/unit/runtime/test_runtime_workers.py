"""Worker-count and role plumbing of runtime/workers.py (no processes started here; the
processes are tested in tests/integration/runtime/test_runtime_workers.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.runtime import workers
from services.runtime.config import ConfigError
from services.runtime.server import ServerConfig, per_process


def _cgroup(tmp: Path, rel: str, limits: dict[str, str]) -> tuple[Path, Path]:
    root = tmp / "cgroup"
    for path, cpu_max in limits.items():
        (root / path).mkdir(parents=True, exist_ok=True)
        (root / path / "cpu.max").write_text(cpu_max + "\n")
    own = tmp / "self-cgroup"
    own.write_text(f"0::{rel}\n")
    return root, own


def test_cores_are_the_affinity_capped_by_the_nearest_cgroup_quota(tmp_path: Path) -> None:
    root, own = _cgroup(tmp_path, "/kubepods/pod1/c1", {
        "kubepods": "max 100000",
        "kubepods/pod1": "150000 100000",  # a 1.5 CPU limit on the pod
        "kubepods/pod1/c1": "max 100000",
    })  # fmt: skip
    assert workers.available_cores(lambda: 8, root, own) == 2  # 1.5 rounded up
    assert workers.available_cores(lambda: 1, root, own) == 1  # taskset -c 0
    root, own = _cgroup(tmp_path / "nolimit", "/user.slice", {"user.slice": "max 100000"})
    assert workers.available_cores(lambda: 4, root, own) == 4
    missing = tmp_path / "none"
    assert workers.available_cores(lambda: 3, missing, missing / "cgroup") == 3


def test_workers_setting_zero_means_one_per_core_and_bad_values_stop_startup() -> None:
    assert workers.worker_count(3) == 3
    assert workers.worker_count(0) == workers.available_cores() >= 1
    assert ServerConfig.from_env("X", {"X_WORKERS": "2"}).workers == 2
    with pytest.raises(ConfigError, match="X_WORKERS"):
        ServerConfig.from_env("X", {"X_WORKERS": "-1"})
    with pytest.raises(ConfigError, match="X_WORKERS"):
        ServerConfig.from_env("X", {"X_WORKERS": "two"})


def test_role_comes_from_the_supervisors_environment() -> None:
    assert workers.role({}) is None
    env = {workers.ENV_INDEX: "1", workers.ENV_COUNT: "2", workers.ENV_CONTROL_FD: "7",
           workers.ENV_GRPC_PORT: "50051"}  # fmt: skip
    r = workers.role(env)
    assert r == workers.Role(1, 2, 7, 50051) and not r.runs_tasks
    assert workers.Role(0, 2, 7, 50051).runs_tasks


def test_port_check_refuses_a_port_in_use_even_with_reuseport() -> None:
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(OSError):
            workers.check_port_free("127.0.0.1", port)
    assert workers.check_port_free("127.0.0.1", 0) > 0


async def test_per_process_marks_a_task_and_still_runs_it() -> None:
    ran = []

    async def task() -> None:
        ran.append(1)

    marked = per_process(task)
    assert marked.per_process and not hasattr(task, "per_process")  # type: ignore[attr-defined]
    await marked()
    assert ran == [1]
