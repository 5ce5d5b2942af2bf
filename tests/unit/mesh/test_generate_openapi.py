"""The generated OpenAPI document: every REST rule is in it, its refs resolve, the docs
page renders.
"""

from __future__ import annotations

import re

from mesh import generate, openapi
from tests.unit.mesh.generated_config import OUT


def test_openapi_covers_every_rest_rule(api) -> None:
    spec = openapi.build(api)
    assert spec["openapi"].startswith("3.")
    for m in api.methods:
        for rule in m.http:
            op = spec["paths"][rule.path][rule.verb]
            assert op["x-grpc-method"] == m.grpc_path
            assert op["security"] == ([] if m.access == "public" else [{"bearerAuth": []}])
            params = {p["name"]: p for p in op.get("parameters", [])}
            for name in rule.path_params:
                assert params[name]["in"] == "path" and params[name]["required"]
            if rule.body == "*":
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert not set(rule.path_params) & set(body["properties"])
    assert not [m for m in api.methods if m.access == "internal" and m.http]
    products = spec["paths"]["/api/v1/products"]["get"]
    assert {"page_size", "page_token", "category", "min_price.units"} <= {
        p["name"] for p in products["parameters"]
    }
    product = spec["components"]["schemas"]["shop.product.v1.Product"]
    assert "image_urls" in product["properties"], "proto field names, as Envoy prints them"
    assert product["properties"]["create_time"]["format"] == "date-time"


def test_openapi_refs_resolve_and_docs_render(api) -> None:
    spec = openapi.build(api)
    text = generate.dump_json(spec)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in spec["components"]["schemas"], ref
    html = (OUT / "openapi" / "docs.html").read_text()
    assert "/api/v1/products/{id}" in html and "<script" not in html
    assert "http://" not in html and "https://" not in html, "no CDN or remote assets"
