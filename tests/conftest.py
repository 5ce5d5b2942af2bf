"""Shared fixtures. Keep small: the stack logic lives in stack/testing.py."""

import pytest

from stack.testing import StackHandle


@pytest.fixture(scope="session")
def stack() -> StackHandle:
    """The local stack of real servers; call `stack.require("postgres", "kafka")` in a test
    (or a module fixture) to start what it needs. Running parts are reused, never stopped."""
    return StackHandle()
