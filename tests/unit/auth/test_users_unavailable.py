"""The user service not answering Login's credential check is UNAVAILABLE (retryable), never
INTERNAL: the soak run saw grpclib's deadline TimeoutError come out of Login as INTERNAL
while the machine was loaded. Real grpclib server on loopback, and a real refused port."""

from __future__ import annotations

import asyncio
import socket

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.const import Status
from grpclib.server import Server

from mesh.stubs import Stub
from services.auth.clients import GrpcUsers
from services.auth.domain import UserServiceUnavailableError
from services.runtime.auth import ServiceIdentity
from services.runtime.errors import to_grpc_error
from shop.user.v1 import user_pb2


async def slow_check(
    request: user_pb2.CheckCredentialsRequest,
) -> user_pb2.CheckCredentialsResponse:
    """Answers CheckCredentials long after any sane deadline."""
    await asyncio.sleep(5)
    return user_pb2.CheckCredentialsResponse(valid=False)


def slow_users() -> Stub:
    service = user_pb2.DESCRIPTOR.services_by_name["UserService"]
    return Stub(service, {"CheckCredentials": slow_check})


def identity() -> ServiceIdentity:
    return ServiceIdentity("auth", Ed25519PrivateKey.generate())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def unavailable(users: GrpcUsers) -> None:
    try:
        with pytest.raises(UserServiceUnavailableError) as caught:
            await users.check_credentials("ada@example.com", "correct horse")
    finally:
        await users.close()
    err, expected = to_grpc_error(caught.value, "trace")
    assert (err.status, expected) == (Status.UNAVAILABLE, True)  # type: ignore[attr-defined]


async def test_a_user_service_past_the_deadline_is_unavailable() -> None:
    server = Server([slow_users()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await unavailable(GrpcUsers(f"127.0.0.1:{port}", identity(), timeout_s=0.2))
    finally:
        server.close()
        await server.wait_closed()


async def test_an_unreachable_user_service_is_unavailable() -> None:
    await unavailable(GrpcUsers(f"127.0.0.1:{closed_port()}", identity(), timeout_s=1.0))
