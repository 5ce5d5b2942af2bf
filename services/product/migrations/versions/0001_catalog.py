"""Catalog, stock and reservations.

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
        CREATE TABLE categories (
            slug text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE SEQUENCE product_number_seq START 1001;

        CREATE TABLE products (
            id text PRIMARY KEY,
            sku text NOT NULL UNIQUE,
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            category text NOT NULL REFERENCES categories (slug),
            currency char(3) NOT NULL,
            price_units bigint NOT NULL CHECK (price_units >= 0),
            price_nanos integer NOT NULL CHECK (price_nanos BETWEEN 0 AND 999999999),
            -- one comparable amount for price filters, sorting and keyset paging
            price numeric(30, 9) GENERATED ALWAYS AS
                (price_units + price_nanos / 1000000000.0) STORED,
            image_urls text[] NOT NULL DEFAULT '{}',
            -- units available now: reservations decrement it, never below zero
            stock integer NOT NULL CHECK (stock >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            search tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', name), 'A')
                || setweight(to_tsvector('english', category), 'B')
                || setweight(to_tsvector('english', description), 'C')
            ) STORED
        );
        CREATE INDEX products_search_idx ON products USING gin (search);
        CREATE INDEX products_category_name_idx ON products (category, name, id);
        CREATE INDEX products_name_idx ON products (name, id);
        CREATE INDEX products_price_idx ON products (price, id);
        CREATE INDEX products_created_idx ON products (created_at DESC, id DESC);

        -- one row per order: the idempotency key of ReserveStock / ReleaseStock
        CREATE TABLE reservations (
            order_id text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            released_at timestamptz
        );
        CREATE TABLE reservation_lines (
            order_id text NOT NULL REFERENCES reservations (order_id),
            product_id text NOT NULL REFERENCES products (id),
            name text NOT NULL,
            quantity integer NOT NULL CHECK (quantity > 0),
            currency char(3) NOT NULL,
            unit_units bigint NOT NULL,
            unit_nanos integer NOT NULL,
            PRIMARY KEY (order_id, product_id)
        );
"""


def downgrade() -> None:
    op.execute("DROP TABLE reservation_lines, reservations, products, categories")
    op.execute("DROP SEQUENCE product_number_seq")
