"""Alembic environment of the shipping database (see services.runtime.migrations)."""

from services.runtime.migrations import run_env

run_env()
