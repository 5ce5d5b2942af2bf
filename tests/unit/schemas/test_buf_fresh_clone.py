"""Schema authors run buf directly: in a fresh clone, before any `make gen`, `buf lint` and
`buf breaking --against '.git#...'` must find every import the schemas make (the vendored
third-party protos are committed under schemas/vendor for that reason)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BUF = ROOT / "node_modules" / ".bin" / "buf"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf is installed by `make install`")


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the committed HEAD: no .build/, no node_modules/, nothing generated here."""
    dest = tmp_path_factory.mktemp("fresh") / "shopmesh"
    cloned = _run("git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest), cwd=ROOT)
    assert cloned.returncode == 0, cloned.stderr
    assert not (dest / ".build").exists()
    return dest


def test_buf_lint_passes_in_a_fresh_clone(clone: Path) -> None:
    result = _run(str(BUF), "lint", cwd=clone)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_git_passes_in_a_fresh_clone(clone: Path) -> None:
    # Against the clone's own HEAD: the schemas equal themselves, so any failure is buf not
    # finding the workspace's modules or imports in the git ref.
    result = _run(str(BUF), "breaking", "--against", ".git#ref=HEAD", cwd=clone)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_from_a_fresh_clone_sees_a_removed_field(clone: Path) -> None:
    """The control: the same command does fail when the working tree breaks the API."""
    proto = clone / "schemas" / "proto" / "shop" / "order" / "v1" / "order.proto"
    text = proto.read_text()
    broken = text.replace("  string cancel_reason = 9;", "", 1)
    assert broken != text, "order.proto changed: pick another field for the control"
    proto.write_text(broken)
    try:
        result = _run(str(BUF), "breaking", "--against", ".git#ref=HEAD", cwd=clone)
    finally:
        proto.write_text(text)
    assert result.returncode != 0
    assert "cancel_reason" in result.stdout + result.stderr
