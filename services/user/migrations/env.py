"""Alembic environment of the user database (see services.runtime.migrations)."""

from services.runtime.migrations import run_env

run_env()
