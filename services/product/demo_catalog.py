"""The demo catalog's data: 60 products (p-0001..p-0060) in six categories. Stdlib only,
so the picture script (pictures.py) can draw them where the service's dependencies are not
installed (the gateway image's build); demo.py loads them into the database."""

from __future__ import annotations

from collections.abc import Iterator

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


def demo_items() -> Iterator[tuple[str, str, str, str, str, int]]:
    """(id, name, description, category, price in USD, n) of each demo product, in id order."""
    n = 0
    for category, items in CATALOG.items():
        for name, description, price in items:
            n += 1
            yield f"p-{n:04d}", name, description, category, price, n
