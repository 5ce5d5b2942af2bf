"""Per-method policy from the schema: `option (shop.mesh.v1.policy) = {access, idempotent,
timeout_ms, callers}` read at runtime from the generated descriptors (the same source mesh/
uses).

    policy = method_policy("/shop.product.v1.ProductService/ReserveStock")
    policy.access is Access.INTERNAL; policy.timeout_s == 3.0; policy.callers == {"order"}

The server's call wrapper looks up each method's policy once at startup, applies its timeout
and passes it to the auth hook (`AuthHook`), which the auth work enforces.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache

from google.protobuf import descriptor_pool

DEFAULT_TIMEOUT_MS = 5000  # the mesh's default when timeout_ms is 0 (options.proto)


class Access(enum.Enum):
    UNSPECIFIED = 0
    PUBLIC = 1
    USER = 2
    ADMIN = 3
    INTERNAL = 4


@dataclass(frozen=True)
class MethodPolicy:
    method: str  # "/shop.product.v1.ProductService/GetProduct"
    access: Access
    idempotent: bool
    timeout_ms: int
    # Services allowed to call with their own identity (services/runtime/auth.py).
    callers: frozenset[str] = frozenset()

    @property
    def timeout_s(self) -> float:
        return (self.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000


@cache
def method_policy(path: str) -> MethodPolicy:
    """Policy of a gRPC method path; a method without the option gets UNSPECIFIED access
    (the auth hook should refuse it) and the default timeout."""
    from shop.mesh.v1 import options_pb2

    full = path.strip("/").replace("/", ".")
    method = descriptor_pool.Default().FindMethodByName(full)
    opts = method.GetOptions()
    if not opts.HasExtension(options_pb2.policy):
        return MethodPolicy(path, Access.UNSPECIFIED, False, 0)
    p = opts.Extensions[options_pb2.policy]
    return MethodPolicy(path, Access(p.access), p.idempotent, p.timeout_ms, frozenset(p.callers))


@dataclass(frozen=True)
class CallInfo:
    """What an auth hook sees about a call before the handler runs."""

    policy: MethodPolicy
    metadata: Mapping[str, str]
    peer: str | None


# Raises services.runtime.errors.Unauthenticated / PermissionDenied to refuse the call; may
# return a principal (e.g. claims) that handlers read from the request context.
AuthHook = Callable[[CallInfo], Awaitable[object | None]]
