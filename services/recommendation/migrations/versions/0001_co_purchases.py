"""Co-purchase counts and the events they were counted from.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in SCHEMA.split(";"):  # asyncpg runs one statement per call
        if statement.strip():
            op.execute(statement)


SCHEMA = """
        -- the OrderPlaced events already counted (Kafka delivers at least once)
        CREATE TABLE counted_events (
            event_id text PRIMARY KEY,
            order_id text NOT NULL,
            counted_at timestamptz NOT NULL DEFAULT now()
        );

        -- orders holding both product_id and other_id
        CREATE TABLE co_purchases (
            product_id text NOT NULL,
            other_id text NOT NULL,
            orders bigint NOT NULL,
            PRIMARY KEY (product_id, other_id)
        );
        CREATE INDEX co_purchases_top_idx ON co_purchases (product_id, orders DESC, other_id)
"""


def downgrade() -> None:
    op.execute("DROP TABLE co_purchases")
    op.execute("DROP TABLE counted_events")
