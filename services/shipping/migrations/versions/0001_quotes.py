"""Shipping quotes.

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
        CREATE TABLE quotes (
            id text PRIMARY KEY,
            country_code char(2) NOT NULL,
            lines jsonb NOT NULL,
            currency char(3) NOT NULL,
            price_units bigint NOT NULL,
            price_nanos integer NOT NULL,
            rate_version bigint NOT NULL,
            zone text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        );
        CREATE INDEX quotes_expires_idx ON quotes (expires_at)
"""


def downgrade() -> None:
    op.execute("DROP TABLE quotes")
