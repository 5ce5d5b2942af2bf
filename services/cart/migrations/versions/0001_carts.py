"""Carts and the OrderPlaced events applied to them.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # asyncpg runs one statement per call
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


SCHEMA = """
        CREATE TABLE carts (
            user_id text PRIMARY KEY,
            -- [[product_id, quantity], ...] in the order first added, at most 50 lines
            items jsonb NOT NULL DEFAULT '[]',
            updated_at timestamptz
        );

        -- OrderPlaced events already applied: a redelivery finds its id here and does
        -- nothing. Kafka keeps a record 7 days, so older ids may be pruned.
        CREATE TABLE cart_events (
            event_id text PRIMARY KEY,
            handled_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX cart_events_handled_at ON cart_events (handled_at)
"""
