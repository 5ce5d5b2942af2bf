"""The runtime auth hook with its memory of verified tokens (SHOPMESH_VERIFIED_TOKENS, the
default) against verifying every call (0), same run, same tokens: CPU per admitted call of
the hook alone (RuntimeAuth.__call__: bearer parsing, the key caches, Ed25519 and claims, the
policy check) for a service token (order calling ReserveStock) and a user token (a shopper's
GetCart). Keys come from in-process JWKS fetchers, so no network is involved; each side runs
--calls calls per round, rounds interleaved.

    python -m bench.token_memory_ab [--rounds 5] [--calls 20000]
Writes bench/results/token_memory_ab.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import median_range, run_main, write_result
from services.runtime.auth import (
    AuthConfig,
    JwksCache,
    RuntimeAuth,
    ServiceIdentity,
    ServiceKeyCache,
    okp_jwk,
    sign,
)
from services.runtime.policy import Access, CallInfo, MethodPolicy

USER_KEY = Ed25519PrivateKey.generate()
ORDER = ServiceIdentity("order", Ed25519PrivateKey.generate())


async def _user_jwks() -> dict[str, Any]:
    return {"keys": [okp_jwk(USER_KEY.public_key(), "u1")]}


async def _service_jwks() -> dict[str, Any]:
    return {"keys": [ORDER.jwk()], "key_services": {ORDER.kid: "order"}}


def _hook(remembered: int) -> RuntimeAuth:
    return RuntimeAuth(
        AuthConfig(verified_tokens=remembered),
        ServiceIdentity("product", Ed25519PrivateKey.generate()),
        JwksCache(_user_jwks),
        ServiceKeyCache(_service_jwks),
    )


def _calls() -> dict[str, CallInfo]:
    cfg = AuthConfig()
    now = int(time.time())
    user = sign(
        {"iss": cfg.jwt_issuer, "aud": cfg.jwt_audience, "sub": "u-1", "roles": ["customer"],
         "iat": now, "exp": now + 900, "jti": "j"}, USER_KEY, "u1",
    )  # fmt: skip
    reserve = MethodPolicy("/shop.product.v1.ProductService/ReserveStock", Access.INTERNAL,
                           False, 0, frozenset({"order"}))  # fmt: skip
    get_cart = MethodPolicy("/shop.cart.v1.CartService/GetCart", Access.USER, False, 0,
                            frozenset())  # fmt: skip
    return {
        "service token": CallInfo(reserve, {"authorization": f"Bearer {ORDER.token()}"}, None),
        "user token": CallInfo(get_cart, {"authorization": f"Bearer {user}"}, None),
    }


async def _side(hook: RuntimeAuth, call: CallInfo, n: int) -> float:
    await hook(call)  # keys fetched, first verification
    cpu0 = time.process_time()
    for _ in range(n):
        await hook(call)
    return 1e6 * (time.process_time() - cpu0) / n


async def bench(rounds: int, calls: int) -> dict[str, Any]:
    sides = {"verify every call": 0, "remembered": AuthConfig().verified_tokens}
    us: dict[str, dict[str, list[float]]] = {}
    for kind, call in _calls().items():
        per = us.setdefault(kind, {s: [] for s in sides})
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                per[side].append(await _side(_hook(sides[side]), call, calls))
    out: dict[str, Any] = {}
    for kind, per in us.items():
        base, new = per["verify every call"], per["remembered"]
        out[kind] = {
            "cpu_us_per_call": {side: median_range(xs, 1) for side, xs in per.items()},
            "ratio_remembered_over_verify": median_range(
                [n / b for n, b in zip(new, base, strict=True)]
            ),
        }
        print(
            f"{kind}: {out[kind]['cpu_us_per_call']['verify every call']['median']} -> "
            f"{out[kind]['cpu_us_per_call']['remembered']['median']} us per call, "
            f"x{out[kind]['ratio_remembered_over_verify']['median']}"
        )
    return {
        "what": "runtime auth hook CPU per admitted call: every call verified vs remembered "
        "verified tokens (SHOPMESH_VERIFIED_TOKENS)",
        "settings": {"rounds": rounds, "calls_per_side_per_round": calls},
        "results": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args()
    print(f"wrote {write_result('token_memory_ab', run_main(bench(args.rounds, args.calls)))}")


if __name__ == "__main__":
    main()
