"""Pictures of the demo products, drawn by the project: one small SVG per product (no
downloads, no binary assets in git), the same bytes on every run.

Each picture is a 4:3 card: a two-colour gradient picked from the product id, the
category's glyph and the product's name. The storefront build writes them into
frontend/public/images/products/ (not committed), which every Vite build copies into the
bundle (`python -m services.product.pictures <dir>`, run by stack/frontend.py; the gateway
image's build runs it in its own stage; stdlib only), NGINX
serves them under /images/products/<id>.svg with cache headers (mesh/nginx.py), and the
demo catalog's image URLs point there (services/product/demo.py).
"""

from __future__ import annotations

import hashlib
import sys
from html import escape
from pathlib import Path

from services.product.demo_catalog import demo_items

URL_PREFIX = "/images/products/"
WIDTH, HEIGHT = 480, 360

# One simple glyph per demo category (SVG path data in a 120x120 box).
GLYPHS = {
    "kitchen": "M20 50h80v10a40 40 0 0 1-80 0zM100 58h12a8 8 0 0 1 0 16h-10",  # a pot
    "outdoor": "M10 110L50 30l20 36 14-22 26 66z",  # mountains
    "electronics": "M15 25h90v60H15zM45 95h30v8H45zM35 103h50v6H35z",  # a screen
    "books": "M20 20h36a10 10 0 0 1 4 4v86a10 10 0 0 0-4-4H20zM100 20H64a10 10 0 0 0-4 4v86"
    "a10 10 0 0 1 4-4h36z",  # an open book
    "home": "M60 15l50 42h-14v50H24V57H10zM50 107V77h20v30z",  # a house
    "fitness": "M8 50h12v20H8zM20 42h12v36H20zM32 56h56v8H32zM88 42h12v36H88zM100 50h12v20h-12z",
}
DEFAULT_GLYPH = "M60 20a40 40 0 1 0 0.1 0z"


def url(product_id: str) -> str:
    return f"{URL_PREFIX}{product_id}.svg"


def _colours(product_id: str) -> tuple[str, str]:
    digest = hashlib.sha256(product_id.encode()).digest()
    hue = digest[0] * 360 // 256
    return f"hsl({hue} 70% 82%)", f"hsl({(hue + 40) % 360} 60% 62%)"


def svg(product_id: str, name: str, category: str) -> str:
    """The picture of one product as SVG text (deterministic)."""
    light, dark = _colours(product_id)
    glyph = GLYPHS.get(category, DEFAULT_GLYPH)
    label = escape(name if len(name) <= 28 else name[:27] + "…")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(name)}">'
        f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="{light}"/><stop offset="1" stop-color="{dark}"/>'
        f"</linearGradient></defs>"
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="url(#g)"/>'
        f'<g transform="translate(150 50) scale(1.5)" fill="#ffffff" fill-opacity="0.9" '
        f'stroke="#1f2937" stroke-opacity="0.35" stroke-width="2"><path d="{glyph}"/></g>'
        f'<text x="240" y="320" text-anchor="middle" font-family="system-ui, sans-serif" '
        f'font-size="26" font-weight="600" fill="#111827">{label}</text>'
        f"</svg>\n"
    )


def write_all(directory: Path) -> int:
    """Write every demo product's picture into `directory`; returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for pid, name, _, category, _, _ in demo_items():
        path, text = directory / f"{pid}.svg", svg(pid, name, category)
        # Unchanged pictures keep their file (and mtime): the stack's frontend watcher
        # rebuilds on any change of its inputs, these among them.
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        count += 1
    return count


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("frontend/dist/images/products")
    print(f"wrote {write_all(out)} product pictures to {out}")
