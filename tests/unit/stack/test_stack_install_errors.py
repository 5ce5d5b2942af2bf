"""Install failures read as one line naming the step, a hint, and no traceback; Kafka's
java check names a missing or too old java with its fix. No servers: private state dirs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack import cli
from stack.kafka import JAVA_HINT, check_java, java_major
from stack.model import Component, Step, Tcp
from stack.runner import Stack, StackError, run_cmd


def _never_started() -> list[str]:
    raise AssertionError("a component whose install failed must not start")


def _stack_with(tmp_path: Path, install) -> Stack:
    step = Step("fetch widget jars", present=lambda: False, install=install)
    widget = Component(name="widget", command=_never_started, health=Tcp(1), requires=[step])
    return Stack([widget], tmp_path)


def _up(monkeypatch, capsys, stack: Stack) -> tuple[int, str, str]:
    monkeypatch.setattr(Stack, "default", classmethod(lambda cls: stack))
    code = cli.main(["up"])
    out, err = capsys.readouterr()
    return code, out, err


def test_failing_install_step_is_one_line_naming_the_step_with_a_hint(
    tmp_path, monkeypatch, capsys
):
    def install() -> None:
        raise ConnectionError("connection refused by repo.maven.apache.org\n  at line 2 of 40")

    code, out, err = _up(monkeypatch, capsys, _stack_with(tmp_path, install))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == (
        "FAILED widget: install step 'fetch widget jars' failed: "
        "connection refused by repo.maven.apache.org"
    )
    assert lines[1].startswith("hint: ") and "make up" in lines[1]
    assert len(lines) == 2
    assert "Traceback" not in out + err and "at line 2" not in err


def test_failing_install_command_names_the_step_shows_its_output_and_a_hint(
    tmp_path, monkeypatch, capsys
):
    def install() -> None:
        argv = [sys.executable, "-c", "print('E: Unable to locate package widget'); exit(100)"]
        run_cmd(argv, "widget", tmp_path / "logs" / "install.log")

    code, _, err = _up(monkeypatch, capsys, _stack_with(tmp_path, install))
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith("FAILED widget: install step 'fetch widget jars' failed: ")
    assert "exited 100" in first
    assert "E: Unable to locate package widget" in err
    assert "\nhint: " in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ("bash: java: command not found", None),
    ],
)
def test_java_major_reads_every_version_format(output, major):
    assert java_major(output) == major


def _fake_java(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2019-01-15' >&2\n")
    java.chmod(0o755)


def test_missing_java_is_named_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no java on it
    with pytest.raises(StackError) as err:
        check_java()
    assert err.value.component == "kafka"
    assert "java not found" in err.value.message and "17+" in err.value.message
    assert err.value.hint == JAVA_HINT and "openjdk-17" in JAVA_HINT


def test_old_java_is_named_with_its_version_and_fix(tmp_path, monkeypatch):
    _fake_java(tmp_path / "bin", "11.0.2")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(StackError) as err:
        check_java()
    assert "is Java 11" in err.value.message and "needs Java 17+" in err.value.message
    assert err.value.hint == JAVA_HINT
    assert "\n" not in err.value.render().split("\nhint: ")[0]  # one line, then the hint


def test_java_17_passes(tmp_path, monkeypatch):
    _fake_java(tmp_path / "bin", "17.0.15")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    check_java()
