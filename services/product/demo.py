"""Demo catalog: `python -m services.product.demo` loads 60 products (p-0001..p-0060) in six
categories, once: existing ids are left alone, so it is safe to run on every `stack up`.
Runs the migrations first so it works on an empty database too."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import text

from services.product import pictures
from services.product.config import ProductConfig
from services.product.domain import CreateProduct, Money
from services.product.main import MIGRATIONS
from services.product.repository import SqlProductRepository
from services.runtime.db import Database
from services.runtime.migrations import migrated_database

# category -> [(name, description, price USD)], ten each
CATALOG: dict[str, list[tuple[str, str, str]]] = {
    "kitchen": [
        ("Enamel Dutch Oven 5.5 qt", "Cast iron with a chip-resistant enamel finish.", "89.00"),
        ("Chef's Knife 8\"", "High-carbon stainless steel blade, full tang.", "59.90"),
        ("Pour-Over Coffee Kettle", "Gooseneck spout for a precise, slow pour.", "34.50"),
        ("Bamboo Cutting Board Set", "Three boards with juice grooves.", "27.99"),
        ("Stoneware Mug Pair", "Hand-glazed mugs, 350 ml, dishwasher safe.", "22.00"),
        ('Cast Iron Skillet 12"', "Pre-seasoned skillet for stove, oven and grill.", "39.95"),
        ("Digital Kitchen Scale", "Weighs to 1 g, tare function, 5 kg capacity.", "18.49"),
        ("Silicone Spatula Trio", "Heat resistant to 260 C, seamless heads.", "12.99"),
        ("French Press 1 L", "Borosilicate glass with a stainless steel frame.", "29.00"),
        ("Linen Tea Towels", "Set of four stonewashed linen towels.", "24.00"),
    ],
    "outdoor": [
        ("Ultralight Tent 2P", "Freestanding two-person tent, 1.3 kg.", "249.00"),
        ("Down Sleeping Bag -5 C", "750-fill down, compressible mummy bag.", "189.00"),
        ("Trekking Poles Carbon", "Collapsible carbon poles with cork grips.", "79.90"),
        ("Insulated Water Bottle 750 ml", "Keeps drinks cold for 24 hours.", "27.50"),
        ("Headlamp 400 lm", "Rechargeable, red light mode, IPX6.", "34.99"),
        ("Camping Stove", "Compact canister stove with piezo ignition.", "44.00"),
        ("Hiking Daypack 24 L", "Ventilated back panel, rain cover included.", "69.00"),
        ("Camp Chair", "Folding chair, 145 kg capacity, packs small.", "49.95"),
        ("Merino Hiking Socks", "Cushioned merino wool socks, two pairs.", "21.00"),
        ("Waterproof Map Case", "Clear welded case with a neck cord.", "14.50"),
    ],
    "electronics": [
        ("Wireless Earbuds", "Active noise cancelling, 30 h with case.", "129.00"),
        ("Mechanical Keyboard", "Hot-swappable switches, aluminium frame.", "149.00"),
        ("USB-C Hub 7-in-1", "HDMI 4K, SD reader, 100 W pass-through.", "45.99"),
        ("Portable SSD 1 TB", "USB 3.2, up to 1050 MB/s.", "99.00"),
        ("Bluetooth Speaker", "Waterproof speaker with 12 h playtime.", "59.00"),
        ("Webcam 1080p", "Autofocus webcam with stereo microphones.", "49.00"),
        ("Wireless Mouse", "Silent clicks, multi-device pairing.", "29.99"),
        ('E-Reader 6"', "Glare-free display, adjustable warm light.", "119.00"),
        ("Smart Plug Two-Pack", "Schedules and energy monitoring.", "24.99"),
        ("Noise Cancelling Headphones", "Over-ear, 40 h battery, fold flat.", "229.00"),
    ],
    "books": [
        ("Designing Data Systems", "Reliable, scalable and maintainable systems.", "42.00"),
        ("The Pragmatic Programmer", "From journeyman to master, 20th anniversary.", "39.99"),
        ("Release It!", "Design and deploy production-ready software.", "37.50"),
        ("Domain-Driven Design Distilled", "The essentials of DDD, concise.", "29.99"),
        ("Architecture Patterns in Python", "TDD, DDD and event-driven microservices.", "44.99"),
        ("Site Reliability Engineering", "How Google runs production systems.", "49.00"),
        ("The Art of PostgreSQL", "Turn thousands of lines of code into simple queries.", "35.00"),
        ("Kafka: The Definitive Guide", "Real-time data and stream processing.", "54.99"),
        ("Fluent Python", "Clear, concise and effective programming.", "59.99"),
        ("Refactoring", "Improving the design of existing code.", "47.99"),
    ],
    "home": [
        ("Wool Throw Blanket", "Woven lambswool throw, 130 x 180 cm.", "79.00"),
        ("Ceramic Table Lamp", "Linen shade, warm dimmable bulb included.", "64.00"),
        ("Scented Candle Cedar", "Soy wax, 50 h burn time.", "19.50"),
        ("Cotton Bath Towels", "Set of two 600 gsm organic cotton towels.", "38.00"),
        ("Wall Clock Oak", "Silent sweep movement, 30 cm.", "45.00"),
        ("Linen Duvet Cover", "Stonewashed French linen, double.", "129.00"),
        ("Storage Baskets", "Set of three seagrass baskets.", "36.99"),
        ("Indoor Plant Pot", "Terracotta pot with drainage saucer, 20 cm.", "16.00"),
        ("Door Mat Coir", "Natural coir mat with rubber backing.", "23.00"),
        ("Glass Carafe", "1 L carafe with tumbler lid.", "18.00"),
    ],
    "fitness": [
        ("Yoga Mat 6 mm", "Non-slip natural rubber, carrying strap.", "54.00"),
        ("Adjustable Dumbbells", "2.5 to 24 kg each, quick dial.", "299.00"),
        ("Resistance Bands Set", "Five bands, door anchor, handles.", "25.99"),
        ("Jump Rope Speed", "Ball-bearing handles, adjustable cable.", "14.99"),
        ("Foam Roller", "High-density roller for recovery, 45 cm.", "22.00"),
        ("Kettlebell 16 kg", "Cast iron with a powder-coated grip.", "59.00"),
        ("Running Belt", "Bounce-free belt for phone and keys.", "17.50"),
        ("Pull-Up Bar", "Doorway bar, no screws, 100 kg.", "32.00"),
        ("Gym Towel Microfibre", "Quick-dry towel with zip pocket.", "12.00"),
        ("Shaker Bottle", "700 ml, leak-proof, mixing ball.", "9.99"),
    ],
}


def demo_products() -> list[tuple[str, CreateProduct]]:
    out = []
    n = 0
    for category, items in CATALOG.items():
        for name, description, price in items:
            n += 1
            pid = f"p-{n:04d}"
            out.append(
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
            )
    return out


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
    print(f"product demo data: {added} products added, {len(demo_products())} in the catalog")


if __name__ == "__main__":
    asyncio.run(main())
