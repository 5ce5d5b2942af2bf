"""The local stack runs Envoy with the issuer the services read: the committed config (the
generator's defaults) when SHOPMESH_JWT_ISSUER / _AUDIENCE are unset, else a config the
generator renders for them into the state dir, and a changed value restarts Envoy."""

from __future__ import annotations

import pytest
import yaml

from stack import gateway


@pytest.fixture(autouse=True)
def _private_state(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SHOPMESH_STATE_DIR", str(tmp_path))
    for var in ("SHOPMESH_JWT_ISSUER", "SHOPMESH_JWT_AUDIENCE"):
        monkeypatch.delenv(var, raising=False)
    # The rendering itself is under test, not the freshness of mesh/out.
    monkeypatch.setattr(gateway, "_ensure_mesh", lambda: None)


def _providers(path) -> list[dict]:  # type: ignore[no-untyped-def]
    config = yaml.safe_load(path.read_text())
    out = []
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for f in hcm["http_filters"]:
            if f["name"] == "envoy.filters.http.jwt_authn":
                out.append(f["typed_config"]["providers"]["shop_auth"])
    return out


def test_the_committed_config_runs_with_the_default_issuer() -> None:
    assert not gateway._envoy_overridden()
    assert gateway._envoy_config() == gateway.MESH_OUT / "envoy" / "envoy.yaml"


def test_another_issuer_renders_envoy_for_it(monkeypatch, tmp_path) -> None:
    default_digest = gateway._envoy_digest()
    monkeypatch.setenv("SHOPMESH_JWT_ISSUER", "https://login.example.com")
    monkeypatch.setenv("SHOPMESH_JWT_AUDIENCE", "shop-x")
    assert gateway._envoy_overridden()
    path = gateway._envoy_config()
    assert path.parent == tmp_path / "envoy"
    providers = _providers(path)
    assert len(providers) == 2  # the edge and the internal listener
    for p in providers:
        assert (p["issuer"], p["audiences"]) == ("https://login.example.com", ["shop-x"])
    assert gateway._envoy_digest() != default_digest  # `stack up` restarts Envoy
