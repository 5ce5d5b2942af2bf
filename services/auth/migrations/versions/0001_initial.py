"""Signing keys, refresh-token families and tokens, login throttle counters."""

from alembic import op

revision = "0001"
down_revision = None

STATEMENTS = [
    # nonce || AES-GCM(private key) with the kid as associated data
    """CREATE TABLE signing_keys (
        kid          text PRIMARY KEY,
        activate_at  timestamptz NOT NULL,
        sealed       bytea NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE refresh_families (
        family_id    text PRIMARY KEY,
        user_id      text NOT NULL,
        roles        text[] NOT NULL,
        created_at   timestamptz NOT NULL,
        revoked_at   timestamptz
    )""",
    "CREATE INDEX refresh_families_user ON refresh_families (user_id)",
    # token_hash is sha256(token): the token itself is never stored
    """CREATE TABLE refresh_tokens (
        token_hash   bytea PRIMARY KEY,
        family_id    text NOT NULL REFERENCES refresh_families ON DELETE CASCADE,
        created_at   timestamptz NOT NULL,
        expires_at   timestamptz NOT NULL,
        spent_at     timestamptz
    )""",
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
    # key: acct:<sha256(lower(email))> or ip:<client address>
    """CREATE TABLE login_throttle (
        key          text PRIMARY KEY,
        window_start timestamptz NOT NULL,
        attempts     integer NOT NULL DEFAULT 0,
        failures     integer NOT NULL DEFAULT 0,
        last_failure timestamptz,
        locked_until timestamptz
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:  # asyncpg runs one statement per call
        op.execute(statement)


def downgrade() -> None:
    for table in ("login_throttle", "refresh_tokens", "refresh_families", "signing_keys"):
        op.execute(f"DROP TABLE {table}")
