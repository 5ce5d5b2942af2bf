"""Demo catalog: `python -m services.product.demo` loads 60 products (p-0001..p-0060) in six
categories, once: existing ids are left alone, so it is safe to run on every `stack up`.
Runs the migrations first so it works on an empty database too."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import text

from services.product import pictures
from services.product.config import ProductConfig
from services.product.demo_catalog import CATALOG, demo_items
from services.product.domain import CreateProduct, Money
from services.product.main import MIGRATIONS
from services.product.repository import SqlProductRepository
from services.runtime.db import Database
from services.runtime.migrations import migrated_database


def demo_products() -> list[tuple[str, CreateProduct]]:
    return [
        (
            pid,
            CreateProduct(
                sku=f"SM-{category[:3].upper()}-{n:04d}",
                name=name,
                description=description,
                category=category,
                price=Money.from_decimal("USD", Decimal(price)),
                image_urls=(pictures.url(pid),),
                stock=25 + (n * 37) % 176,
            ),
        )
        for pid, name, description, category, price, n in demo_items()
    ]


# Where the demo pictures pointed before the project drew its own (a host that never
# existed): a catalog loaded then gets the drawn pictures, an admin's own URL is kept.
OLD_PICTURE_HOST = "https://images.shopmesh.local/products/"


async def load(db: Database) -> int:
    """Insert the demo products that are missing; returns how many were added."""
    added = 0
    async with db.unit_of_work().write() as conn:
        repo = SqlProductRepository(conn)
        for pid, cmd in demo_products():
            if not await repo.exists(pid):
                await repo.add(cmd, product_id=pid)
                added += 1
        await conn.execute(
            text(
                "UPDATE products SET image_urls = ARRAY[:new || id || '.svg'] "
                "WHERE image_urls = ARRAY[:old || id || '.jpg']"
            ),
            {"new": pictures.URL_PREFIX, "old": OLD_PICTURE_HOST},
        )
    return added


async def main() -> None:
    config = ProductConfig.from_env()
    async with migrated_database(config.db, "product-demo", MIGRATIONS) as db:
        added = await load(db)
    print(
        f"product demo data: {added} products added, {len(demo_products())} in the catalog "
        f"({len(CATALOG)} categories)"
    )


if __name__ == "__main__":
    asyncio.run(main())
