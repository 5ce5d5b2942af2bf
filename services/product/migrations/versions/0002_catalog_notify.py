"""Catalog change notices: NOTIFY catalog_changed from every write to products.

Each product-service process caches catalog rows (services/product/cache.py) and LISTENs on
this channel. The trigger sends the notice inside the writing transaction, so it is
delivered exactly when (and only if) the write commits, whichever process or tool wrote.
Payloads: `row:<id>` (a change that cannot move the product between list pages: stock,
description, images, sku), `set:<id>` (inserted, deleted, or name, category, price or
creation time changed: any list page may differ), `all` (TRUNCATE).

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION notify_catalog_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('catalog_changed', 'all');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('catalog_changed', 'set:' || OLD.id);
    ELSIF TG_OP = 'UPDATE'
        AND (NEW.id, NEW.name, NEW.category, NEW.currency, NEW.price_units,
             NEW.price_nanos, NEW.created_at)
        IS NOT DISTINCT FROM (OLD.id, OLD.name, OLD.category, OLD.currency,
             OLD.price_units, OLD.price_nanos, OLD.created_at) THEN
        PERFORM pg_notify('catalog_changed', 'row:' || NEW.id);
    ELSIF TG_OP = 'UPDATE' THEN
        -- an id change leaves the old id's cache entry behind: drop both
        PERFORM pg_notify('catalog_changed', 'set:' || OLD.id);
        PERFORM pg_notify('catalog_changed', 'set:' || NEW.id);
    ELSE
        PERFORM pg_notify('catalog_changed', 'set:' || NEW.id);
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(
        "CREATE TRIGGER products_notify AFTER INSERT OR UPDATE OR DELETE ON products "
        "FOR EACH ROW EXECUTE FUNCTION notify_catalog_changed()"
    )
    op.execute(
        "CREATE TRIGGER products_notify_truncate AFTER TRUNCATE ON products "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER products_notify_truncate ON products")
    op.execute("DROP TRIGGER products_notify ON products")
    op.execute("DROP FUNCTION notify_catalog_changed()")
