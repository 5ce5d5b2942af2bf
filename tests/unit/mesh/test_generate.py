"""The mesh generator: the committed output is fresh and deterministic, Envoy and NGINX accept
it, and every schema policy (access, idempotent, timeout) shows up where it must.

Envoy, NGINX, OpenAPI and Istio output each have their own module (test_generate_*.py);
this one holds freshness, determinism and the schema rules the generator enforces.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2

import shop.mesh.v1.options_pb2 as options_pb2
from mesh import envoy, generate, openapi
from mesh.api import ApiError, load
from mesh.testing import descriptor_with_extra_rpc, validate_envoy
from tests.unit.mesh.generated_config import OUT, ROOT, _routes

# ------------------------------------------------------------------ freshness, determinism


def test_committed_output_is_fresh(api) -> None:
    files = generate.render(api)
    assert generate.stale(files, OUT) == [], "run `python -m mesh.generate` and commit mesh/out"


def test_render_is_deterministic(api) -> None:
    again = load(generate.DESCRIPTOR)
    assert generate.render(api) == generate.render(again)
    text = (OUT / "envoy" / "envoy.yaml").read_text()
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "no timestamps in generated files"
    assert str(ROOT) not in text, "the committed config must not name this machine's paths"


def test_write_only_touches_changed_files_and_removes_stale(tmp_path, api) -> None:
    files = generate.render(api)
    assert sorted(generate.write(files, tmp_path)) == sorted(files)
    stray = tmp_path / "istio" / "gone.yaml"
    stray.write_text("old")
    assert generate.write(files, tmp_path) == ["istio/gone.yaml"]
    assert not stray.exists()
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0


# ------------------------------------------------------------------ schema rules


def _mutated(tmp_path: Path, edit) -> Path:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(generate.DESCRIPTOR.read_bytes())
    edit(fds)
    out = tmp_path / "mutated.binpb"
    out.write_bytes(fds.SerializeToString())
    return out


def _product(fds: descriptor_pb2.FileDescriptorSet) -> descriptor_pb2.FileDescriptorProto:
    return next(f for f in fds.file if f.package == "shop.product.v1")


def test_rpc_without_policy_is_refused(tmp_path) -> None:
    def drop_policy(fds):
        _product(fds).service[0].method[0].options.ClearExtension(options_pb2.policy)

    with pytest.raises(ApiError, match="missing option"):
        load(_mutated(tmp_path, drop_policy))


def test_service_missing_from_the_table_is_refused(tmp_path) -> None:
    def rename(fds):
        _product(fds).package = "shop.warehouse.v1"

    with pytest.raises(ApiError, match=r"schemas/topology\.yaml"):
        load(_mutated(tmp_path, rename))


def test_new_rpc_gets_routes_with_no_hand_written_config(tmp_path) -> None:
    descriptor = descriptor_with_extra_rpc(tmp_path)
    api = load(descriptor)
    out = tmp_path / "out"
    assert generate.main(["--descriptor", str(descriptor), "--out", str(out), "-q"]) == 0
    cfg = yaml.safe_load((out / "envoy" / "envoy.yaml").read_text())
    path = "/shop.product.v1.ProductService/PingCatalog"
    edge = _routes(cfg, "edge")
    assert edge[path]["route"]["timeout"] == "1.5s"
    assert edge["/api" + path]["route"]["prefix_rewrite"] == path
    assert "retry_policy" in edge[path]["route"]
    assert path in _routes(cfg, "internal")
    spec = openapi.build(api)
    assert spec["paths"]["/api/v1/catalog/ping/{name}"]["get"]["x-grpc-method"] == path
    vs = yaml.safe_load_all((out / "istio" / "product.yaml").read_text())
    assert any(
        r["match"] == [{"uri": {"exact": path}}]
        for d in vs
        if d["kind"] == "VirtualService"
        for r in d["spec"]["http"]
        if "match" in r
    )
    # The new output is a valid Envoy config with the new descriptor (absolute paths here).
    opt = envoy.EnvoyOptions(
        descriptor_path=str(out / "envoy" / "descriptor.binpb"),
        openapi_path=str(out / "openapi" / "openapi.json"),
        docs_path=str(out / "openapi" / "docs.html"),
    )
    conf = tmp_path / "check.yaml"
    conf.write_text(generate.dump_yaml(envoy.build(api, opt)))
    result = validate_envoy(conf)
    assert result.returncode == 0, result.stdout + result.stderr
