"""Users, saved addresses and the transactional outbox.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE users (
        id text PRIMARY KEY,
        email text NOT NULL,
        password_hash text NOT NULL,
        display_name text NOT NULL,
        phone text NOT NULL DEFAULT '',
        roles text[] NOT NULL DEFAULT '{customer}',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # case-insensitive uniqueness without the citext extension (needs no superuser)
    "CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email))",
    """
    CREATE TABLE addresses (
        id text PRIMARY KEY,
        user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        recipient_name text NOT NULL,
        line1 text NOT NULL,
        line2 text NOT NULL DEFAULT '',
        city text NOT NULL,
        region text NOT NULL DEFAULT '',
        postal_code text NOT NULL,
        country_code char(2) NOT NULL,
        is_default boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX addresses_user_idx ON addresses (user_id, created_at)",
    # at most one default address per user, enforced by the database
    "CREATE UNIQUE INDEX addresses_one_default ON addresses (user_id) WHERE is_default",
    """
    CREATE TABLE outbox (
        event_id uuid PRIMARY KEY,
        topic text NOT NULL,
        key text NOT NULL,
        record_name text NOT NULL,
        payload jsonb NOT NULL,
        traceparent text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
    )
    """,
    "CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE sent_at IS NULL",
]


def upgrade() -> None:
    for statement in STATEMENTS:  # asyncpg runs one statement per call
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE outbox, addresses, users")
