"""Alembic environment of the currency database (see services.runtime.migrations)."""

from services.runtime.migrations import run_env

run_env()
