"""Alembic environment of the recommendation database (see services.runtime.migrations)."""

from services.runtime.migrations import run_env

run_env()
