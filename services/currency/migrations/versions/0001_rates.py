"""Versioned exchange rates.

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
        -- one row per publication, never updated (orders name their version)
        CREATE TABLE rate_versions (
            version bigserial PRIMARY KEY,
            base_currency char(3) NOT NULL,
            effective_at timestamptz NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX rate_versions_effective_idx ON rate_versions (effective_at DESC, version DESC);

        -- units of currency_code per one unit of the base currency, 9 decimals as Money
        CREATE TABLE rates (
            version bigint NOT NULL REFERENCES rate_versions (version),
            currency_code char(3) NOT NULL,
            rate numeric(19, 9) NOT NULL CHECK (rate > 0),
            PRIMARY KEY (version, currency_code)
        )
"""


def downgrade() -> None:
    op.execute("DROP TABLE rates")
    op.execute("DROP TABLE rate_versions")
