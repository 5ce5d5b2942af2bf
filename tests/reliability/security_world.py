"""What the security tests share: the protected methods from the schema, the injection
strings and the calls direct and through the gateway (their fixtures, up, stubs and gw, are
in conftest.py)."""

from __future__ import annotations

import random
import string

import httpx
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from mesh.api import load
from mesh.generate import DESCRIPTOR
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request
from tests.reliability.harness import (
    PORTS,
)
from tests.reliability.test_fuzz import message_class

API = load(DESCRIPTOR)
PROTECTED = [m for m in API.methods if m.access != "public"]
INJECTIONS = [
    "' OR 1=1 --",
    "' OR '1'='1' /*",
    "'; DROP TABLE users; --",
    "1) UNION SELECT email, password_hash FROM users --",
    '{"$gt": ""}',
    '{"$ne": null}',
    "$where",
    "'; return true; var x='",
    "%",
    "_",
    ".*",
]


def letters(n: int = 12) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


async def call_direct(method, request, metadata=None) -> Status:
    port = PORTS[method.service.split(".")[1]]
    channel = Channel("127.0.0.1", port)
    try:
        async with channel.request(
            method.grpc_path,
            Cardinality.UNARY_UNARY,
            type(request),
            message_class(method.output_type),
            timeout=10,
            metadata=metadata,
        ) as stream:
            await stream.send_message(request, end=True)
            await stream.recv_message()
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status
    finally:
        channel.close()
    return Status.OK


async def call_grpc_web(gw: httpx.AsyncClient, method, request, headers=None) -> str:
    r = await gw.post(
        f"/api{method.grpc_path}",
        content=grpc_web_request(request.SerializeToString()),
        headers={**GRPC_WEB_HEADERS, **(headers or {})},
    )
    if r.status_code != 200:
        return f"HTTP_{r.status_code}"
    _, trailers = grpc_web_parse(r.content, dict(r.headers))
    return Status(int(trailers.get("grpc-status", "2"))).name


def rest_path(rule) -> str:
    path = rule.path
    for p in rule.path_params:
        path = path.replace("{" + p + "}", "x1")
    return path
