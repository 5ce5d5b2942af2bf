"""The services' published keys (AUTH_SERVICE_PUBLIC_KEYS -> GetServiceJwks): parsing, the dev
default, what is refused outside dev, and the key -> service binding the verifiers rely on."""

from __future__ import annotations

import os

import pytest

from mesh.services import SERVICES
from services.auth.config import AuthServiceConfig
from services.auth.service_keys import (
    DEV_SERVICES,
    ServiceKeys,
    dev_public_keys,
    main,
    parse_public_keys,
)
from services.runtime.auth import (
    ServiceIdentity,
    b64url,
    public_key_from_jwk,
    public_x,
    service_signing_key,
)
from services.runtime.config import ConfigError

PROD = {
    "SHOPMESH_ENV": "prod",
    "AUTH_KEY_ENCRYPTION_KEY": b64url(b"k" * 32),
    "AUTH_DB_PASSWORD": "pw",
}


def _x() -> str:
    return public_x(service_signing_key(b64url(os.urandom(32))))


def test_dev_services_are_the_mesh_services() -> None:
    assert set(DEV_SERVICES) == set(SERVICES)


def test_dev_default_publishes_each_services_derived_key() -> None:
    cfg = AuthServiceConfig.from_env({})
    keys = cfg.service_keys()
    assert set(keys) == set(DEV_SERVICES)
    for name in DEV_SERVICES:
        assert keys[name] == (public_x(ServiceIdentity.from_env(name, {}).key),)


def test_outside_dev_the_keys_are_required_and_dev_keys_refused() -> None:
    with pytest.raises(ConfigError, match="AUTH_SERVICE_PUBLIC_KEYS is required"):
        AuthServiceConfig.from_env(PROD)
    dev_order = f"order:{dev_public_keys(['order'])['order'][0]}"
    with pytest.raises(ConfigError, match="order's dev key is refused"):
        AuthServiceConfig.from_env({**PROD, "AUTH_SERVICE_PUBLIC_KEYS": dev_order})
    own = f"order:{_x()}"
    assert set(
        AuthServiceConfig.from_env({**PROD, "AUTH_SERVICE_PUBLIC_KEYS": own}).service_keys()
    ) == {"order"}


@pytest.mark.parametrize(
    "value",
    ["order", "order:", "Order:AAAA", "order:not-a-key", f"../x:{'A' * 43}", f"order:{'A' * 40}"],
)
def test_malformed_entries_stop_startup_naming_the_variable(value) -> None:
    with pytest.raises(ConfigError, match="AUTH_SERVICE_PUBLIC_KEYS"):
        AuthServiceConfig.from_env({"AUTH_SERVICE_PUBLIC_KEYS": value})


def test_several_keys_per_service_during_a_rotation() -> None:
    old, new, other = _x(), _x(), _x()
    keys = parse_public_keys(
        [f"order:{old}", f"notification:{other}", f"order:{new}", f"order:{old}"]
    )
    assert keys == {"order": (old, new), "notification": (other,)}
    jwks, owners = ServiceKeys(keys).jwks("order")
    assert [j["x"] for j in jwks] == [old, new]
    assert set(owners.values()) == {"order"} and set(owners) == {j["kid"] for j in jwks}
    everyone, owners = ServiceKeys(keys).jwks()
    assert len(everyone) == 3 and sorted(set(owners.values())) == ["notification", "order"]
    assert ServiceKeys(keys).jwks("product") == ([], {})


def test_a_published_key_verifies_the_identity_it_was_made_from(capsys) -> None:
    """The rotation tool's output: the seed for <NAME>_IDENTITY_KEY and the entry for
    AUTH_SERVICE_PUBLIC_KEYS, which publishes exactly the kid the service signs with."""
    assert main(["new", "order"]) == 0
    seed_line, entry_line = capsys.readouterr().out.splitlines()
    var, seed = seed_line.split("=", 1)
    assert var == "ORDER_IDENTITY_KEY"
    entry = entry_line.split(": ", 1)[1]
    ident = ServiceIdentity.from_env("order", {"SHOPMESH_ENV": "prod", var: seed})
    jwks, owners = ServiceKeys(parse_public_keys([entry])).jwks("order")
    assert [j["kid"] for j in jwks] == [ident.kid] and owners == {ident.kid: "order"}
    assert public_key_from_jwk(jwks[0]) is not None
    assert main(["public", seed]) == 0
    assert capsys.readouterr().out.strip() == entry.split(":", 1)[1]
