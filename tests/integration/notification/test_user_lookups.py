"""GrpcUserDirectory against the stack's user service: the recipients asked for together go
out as one BatchGetUsers; an id with no user, or one outside the id rule, fails only its own
email (permanent), never the batch; a user service without BatchGetUsers (UNIMPLEMENTED, an
older one mid-rollout) is asked one GetUser per id."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from grpclib import GRPCError, Status
from grpclib.server import Server

from mesh.stubs import Stub
from services.notification.clients import GrpcUserDirectory
from services.notification.domain import DependencyUnavailableError, UnknownRecipientError
from shop.user.v1 import user_pb2
from tests.integration.notification.conftest import free_port

pytestmark = pytest.mark.stack


async def test_recipients_asked_together_are_one_batch_call(users):
    tag = uuid.uuid4().hex[:8]
    ids = [await users.add(f"lk-{tag}-{i}@shop.test", f"Lookup {i}") for i in range(12)]
    # The replica may lag the registration by a moment: ask until all are there.
    directory = GrpcUserDirectory(users.address, cache_s=30)
    try:
        for _ in range(50):
            got = await asyncio.gather(
                *(directory.get_user(i) for i in ids), return_exceptions=True
            )
            if not any(isinstance(g, Exception) for g in got):
                break
            directory.lookups._cache.clear()
            await asyncio.sleep(0.1)
        assert [(r.user_id, r.email) for r in got] == [
            (i, f"lk-{tag}-{n}@shop.test") for n, i in enumerate(ids)
        ]
        calls = directory.lookups.calls
        bad = await asyncio.gather(
            directory.get_user(ids[0]),  # cached
            directory.get_user(f"u-nobody-{tag}"),
            directory.get_user("../etc/passwd"),  # outside the id rule
            directory.get_user(ids[1]),
            return_exceptions=True,
        )
        assert bad[0].email == f"lk-{tag}-0@shop.test" and bad[3].user_id == ids[1]
        assert isinstance(bad[1], UnknownRecipientError)
        assert isinstance(bad[2], UnknownRecipientError)
        # The unknown id went out in one batch; the bad one never left; the others cached.
        assert directory.lookups.calls == calls + 1
    finally:
        directory.close()


async def test_a_user_service_without_the_batch_is_asked_per_id():
    asked: list[str] = []

    def get_user(req: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        asked.append(req.id)
        if req.id == "u-gone":
            raise GRPCError(Status.NOT_FOUND, "no such user")
        return user_pb2.GetUserResponse(
            user=user_pb2.User(id=req.id, email=f"{req.id}@shop.test", display_name="Old")
        )

    old = Stub(user_pb2.DESCRIPTOR.services_by_name["UserService"], {"GetUser": get_user})
    server, port = Server([old]), free_port()
    await server.start("127.0.0.1", port)
    directory = GrpcUserDirectory(f"127.0.0.1:{port}", cache_s=30)
    try:
        got = await asyncio.gather(
            *(directory.get_user(f"u-{i}") for i in range(5)),
            directory.get_user("u-gone"),
            return_exceptions=True,
        )
        assert [g.email for g in got[:5]] == [f"u-{i}@shop.test" for i in range(5)]
        assert isinstance(got[5], UnknownRecipientError)
        assert sorted(asked) == sorted([*(f"u-{i}" for i in range(5)), "u-gone"])
    finally:
        directory.close()
        server.close()
        await server.wait_closed()


async def test_user_service_down_is_transient_for_every_asker():
    directory = GrpcUserDirectory(f"127.0.0.1:{free_port()}", timeout=2, cache_s=30)
    try:
        got = await asyncio.gather(
            *(directory.get_user(f"u-{i}") for i in range(3)), return_exceptions=True
        )
    finally:
        directory.close()
    assert all(isinstance(g, DependencyUnavailableError) for g in got)
