"""Where services write their spans by default: the stack's state dir, which the tests and
the ops tooling read (stack.model.state_dir)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.tracing.provider import trace_dir
from stack.model import state_dir

ROOT = Path(__file__).resolve().parents[3]


def test_default_trace_dir_is_the_stacks_state_dir(monkeypatch) -> None:
    monkeypatch.delenv("SHOPMESH_STATE_DIR", raising=False)
    assert trace_dir({}) == ROOT / ".stack" / "traces" == state_dir() / "traces"


def test_state_and_trace_dir_settings_move_it() -> None:
    assert trace_dir({"SHOPMESH_STATE_DIR": "/srv/s"}) == Path("/srv/s/traces")
    assert trace_dir({"SHOPMESH_TRACE_DIR": "/t", "SHOPMESH_STATE_DIR": "/s"}) == Path("/t")
