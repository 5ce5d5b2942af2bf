"""The services' published public keys: what GetServiceJwks serves, from the non-secret
AUTH_SERVICE_PUBLIC_KEYS (`name:x,name:x,...`, x = a raw Ed25519 public key, base64url, as in
a JWK). Each service signs its own tokens with the seed only it holds (<NAME>_IDENTITY_KEY,
services/runtime/auth.py); here each public key is bound to one service name, which the
verifiers (the runtime, Envoy, Istio) hold its tokens to.

Rotation of one service's key, without downtime (services/auth/README.md):
1. `python -m services.auth.service_keys new order` prints a fresh seed and its public key;
   add `order:<new x>` to AUTH_SERVICE_PUBLIC_KEYS beside the old one and roll the auth
   service. Verifiers refetch on the unknown kid; Envoy within its cache (60 s).
2. Put the new seed in ORDER_IDENTITY_KEY and roll order: its tokens now carry the new kid.
3. Once order's last old token has expired (10 min), drop the old key and roll auth.

`python -m services.auth.service_keys public <seed>` prints the x of an existing seed.
"""

from __future__ import annotations

import argparse
import binascii
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.runtime.auth import (
    SERVICE_NAME,
    b64url,
    b64url_decode,
    dev_identity_key,
    okp_jwk,
    public_key_from_jwk,
    public_x,
    service_kid,
    service_signing_key,
)
from shop.topology import SERVICES

# The services of the manifest (schemas/topology.yaml): in dev, whose derived dev keys are
# published when AUTH_SERVICE_PUBLIC_KEYS is unset.
DEV_SERVICES = tuple(sorted(SERVICES))


def parse_public_keys(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`name:x` entries -> name -> its keys' x values, in the order given. ValueError names
    the entry that is wrong."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        name, sep, x = entry.strip().partition(":")
        if not sep or not SERVICE_NAME.match(name):
            raise ValueError(f"{entry!r}: expected <service>:<public key x>")
        if public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x}) is None:
            raise ValueError(f"{entry!r}: x is not an Ed25519 public key (32 bytes, base64url)")
        if x not in out.setdefault(name, []):
            out[name].append(x)
    return {name: tuple(xs) for name, xs in out.items()}


def dev_public_keys(services: Iterable[str] = DEV_SERVICES) -> dict[str, tuple[str, ...]]:
    """The public keys of the services' dev seeds (dev only: the seeds are well known)."""
    return {name: (public_x(service_signing_key(dev_identity_key(name))),) for name in services}


def dev_key_in(keys: Mapping[str, tuple[str, ...]]) -> str | None:
    """A service whose listed keys include its well-known dev key, or None."""
    for name, xs in keys.items():
        if dev_public_keys([name])[name][0] in xs:
            return name
    return None


@dataclass(frozen=True)
class ServiceKeys:
    """name -> public keys (several during a rotation), served as JWKs with owners."""

    keys: Mapping[str, tuple[str, ...]]

    def jwks(self, service: str = "") -> tuple[list[dict[str, str]], dict[str, str]]:
        """(JWKs, kid -> service) of one service, or of all when `service` is empty. An
        unknown service has no keys (a verifier then refuses its tokens)."""
        names = [service] if service else sorted(self.keys)
        jwks, owners = [], {}
        for name in names:
            for x in self.keys.get(name, ()):
                kid = service_kid(name, x)
                jwk = public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x})
                assert jwk is not None  # parse_public_keys checked every x
                jwks.append(okp_jwk(jwk, kid))
                owners[kid] = name
        return jwks, owners


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.auth.service_keys")
    sub = parser.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new", help="a fresh identity seed for a service, and its public key")
    new.add_argument("service")
    pub = sub.add_parser("public", help="the public key (x) of a seed")
    pub.add_argument("seed")
    args = parser.parse_args(argv)
    if args.cmd == "new":
        if not SERVICE_NAME.match(args.service):
            parser.error(f"service name {args.service!r}: expected [a-z][a-z0-9-]*")
        seed = b64url(os.urandom(32))
        var = args.service.upper().replace("-", "_") + "_IDENTITY_KEY"
        x = public_x(service_signing_key(seed))
        print(f"{var}={seed}")
        print(f"AUTH_SERVICE_PUBLIC_KEYS entry: {args.service}:{x}")
        return 0
    seed = args.seed.rstrip("=")
    try:
        if len(b64url_decode(seed)) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        parser.error("seed: expected 32 bytes, base64url")
    print(public_x(service_signing_key(seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
