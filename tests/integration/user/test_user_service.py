"""User service over real gRPC against the real PostgreSQL primary and replica."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from sqlalchemy import text

from services.user.demo import DEMO_USERS
from shop.common.v1 import common_pb2
from shop.user.v1 import user_grpc
from shop.user.v1 import user_pb2 as pb
from stack import postgres
from stack.callers import as_service
from tests.integration import demo_loader
from tests.integration.db_statements import WRITE, StatementLog

pytestmark = pytest.mark.stack

PASSWORD = "correct horse battery"
HOME = common_pb2.Address(
    recipient_name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country_code="DE"
)


async def register(stub, email: str | None = None) -> pb.User:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    reply = await stub.RegisterUser(
        pb.RegisterUserRequest(email=email, password=PASSWORD, display_name="Ada")
    )
    return reply.user


async def code_of(coro) -> Status:
    with pytest.raises(GRPCError) as err:
        await coro
    return err.value.status


async def test_register_then_get_and_outbox_row_in_same_transaction(user_app, user_stub):
    email = f"reg-{uuid.uuid4().hex[:10]}@example.com"
    async with user_stub.RegisterUser.open() as stream:
        req = pb.RegisterUserRequest(email=email, password=PASSWORD, display_name="Ada")
        await stream.send_message(req, end=True)
        user = (await stream.recv_message()).user
        await stream.recv_trailing_metadata()
    assert user.id.startswith("u-") and list(user.roles) == [pb.ROLE_CUSTOMER]
    lsn = stream.trailing_metadata["x-shop-lsn"]  # echoed: the next read sees the new user
    got = await user_stub.GetUser(pb.GetUserRequest(id=user.id), metadata={"x-shop-lsn": lsn})
    assert got.user.email == email
    async with user_app.db.unit_of_work().write() as conn:
        row = (
            await conn.execute(
                text("SELECT topic, key, payload FROM outbox WHERE key = :k"), {"k": user.id}
            )
        ).one()
    assert row.topic == "shop.users.v1"
    assert row.payload["email"] == user.email and row.payload["user_id"] == user.id
    assert "password" not in str(row.payload)


async def test_email_is_unique_case_insensitively(user_stub):
    email = f"Case-{uuid.uuid4().hex[:8]}@Example.com"
    await register(user_stub, email)
    assert await code_of(register(user_stub, email.lower())) is Status.ALREADY_EXISTS
    assert await code_of(register(user_stub, email.upper())) is Status.ALREADY_EXISTS


async def test_check_credentials(user_stub):
    email = f"login-{uuid.uuid4().hex[:8]}@example.com"
    user = await register(user_stub, email)
    ok = await user_stub.CheckCredentials(
        pb.CheckCredentialsRequest(email=email.upper(), password=PASSWORD)
    )
    assert ok.valid and ok.user.id == user.id
    wrong = await user_stub.CheckCredentials(
        pb.CheckCredentialsRequest(email=email, password="wrong password")
    )
    unknown = await user_stub.CheckCredentials(
        pb.CheckCredentialsRequest(email="nobody-" + email, password=PASSWORD)
    )
    assert wrong == unknown == pb.CheckCredentialsResponse(valid=False)


async def test_demo_loader_twice_creates_the_demo_users_once(user_app, user_stub):
    """`make up` runs the loader on every start: the demo users exist, can log in, and a
    second run touches no row (users, the demo address, their UserRegistered events)."""
    uids = ", ".join(f"'{u[0]}'" for u in DEMO_USERS)
    queries = (
        f"SELECT id, xmin::text, email, password_hash, display_name, roles, updated_at "
        f"FROM users WHERE id IN ({uids}) ORDER BY id",
        f"SELECT id, xmin::text, is_default FROM addresses WHERE user_id IN ({uids}) ORDER BY id",
        f"SELECT event_id::text, topic FROM outbox WHERE key IN ({uids}) ORDER BY 1",
    )
    dsn = postgres.dsn("user")
    demo_loader.run("services.user.demo")  # at least once before the snapshot
    before = await demo_loader.fingerprint(dsn, *queries)
    again = demo_loader.run("services.user.demo")
    assert "0 users added" in again
    assert await demo_loader.fingerprint(dsn, *queries) == before
    users, addresses, events = before
    assert [u[0] for u in users] == sorted(u[0] for u in DEMO_USERS)
    assert len(addresses) == 1 and len(events) == len(DEMO_USERS)

    conn = await asyncpg.connect(dsn)
    try:  # as x-shop-lsn: the replica read waits for the loader's commits
        lsn = {"x-shop-lsn": await conn.fetchval("SELECT pg_current_wal_lsn()::text")}
    finally:
        await conn.close()
    for uid, email, password, _name, _roles in DEMO_USERS:
        ok = await user_stub.CheckCredentials(
            pb.CheckCredentialsRequest(email=email, password=password), metadata=lsn
        )
        assert ok.valid and ok.user.id == uid, email
        wrong = await user_stub.CheckCredentials(
            pb.CheckCredentialsRequest(email=email, password=password + "x"), metadata=lsn
        )
        assert not wrong.valid


async def test_password_is_stored_only_as_argon2id_hash(user_app, user_stub):
    user = await register(user_stub)
    async with user_app.db.unit_of_work().write() as conn:
        stored = (
            await conn.execute(
                text("SELECT password_hash FROM users WHERE id = :i"), {"i": user.id}
            )
        ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_update_profile_reads_own_write_through_lsn(user_stub):
    user = await register(user_stub)
    async with user_stub.UpdateProfile.open() as stream:
        await stream.send_message(
            pb.UpdateProfileRequest(id=user.id, display_name="Ada L.", phone="+4915112345678"),
            end=True,
        )
        await stream.recv_message()
        await stream.recv_trailing_metadata()
    lsn = stream.trailing_metadata["x-shop-lsn"]
    got = await user_stub.GetUser(pb.GetUserRequest(id=user.id), metadata={"x-shop-lsn": lsn})
    assert (got.user.display_name, got.user.phone) == ("Ada L.", "+4915112345678")


async def test_writes_never_go_to_the_replica(user_app, user_stub):
    """Every statement of Register/UpdateProfile runs on the primary pool, none on the
    replica's (a replica pool pointed at a writable server would not fail by itself)."""
    tag = uuid.uuid4().hex[:10]
    with StatementLog(user_app.db) as sql:
        user = (
            await user_stub.RegisterUser(
                pb.RegisterUserRequest(
                    email=f"w-{tag}@example.com", password=PASSWORD, display_name="W"
                ),
                metadata={"x-request-id": f"register-{tag}"},
            )
        ).user
        await user_stub.UpdateProfile(
            pb.UpdateProfileRequest(id=user.id, display_name="W 2"),
            metadata={"x-request-id": f"update-{tag}"},
        )
        await user_stub.GetUser(
            pb.GetUserRequest(id=user.id), metadata={"x-request-id": f"read-{tag}"}
        )  # the control: a read is seen on the replica pool
    assert sql.of(f"read-{tag}", "replica")
    for call in ("register", "update"):
        assert sql.of(f"{call}-{tag}", "replica") == [], call
        assert any(WRITE.search(s) for s in sql.of(f"{call}-{tag}", "primary")), call


async def test_addresses_default_first_and_promotion_on_remove(user_stub):
    user = await register(user_stub)
    first = (
        await user_stub.AddAddress(pb.AddAddressRequest(user_id=user.id, address=HOME))
    ).address
    assert first.is_default  # the first address becomes the default
    work = common_pb2.Address(
        recipient_name="Ada",
        line1="2 Work Rd",
        city="Paris",
        postal_code="75001",
        country_code="FR",
    )
    second = (
        await user_stub.AddAddress(
            pb.AddAddressRequest(user_id=user.id, address=work, make_default=True)
        )
    ).address
    lsn_md = {"x-shop-lsn": "FFFFFFFF/0"}
    listed = (
        await user_stub.ListAddresses(pb.ListAddressesRequest(user_id=user.id), metadata=lsn_md)
    ).addresses
    assert [a.id for a in listed] == [second.id, first.id]
    assert [a.is_default for a in listed] == [True, False]
    removed = await user_stub.RemoveAddress(
        pb.RemoveAddressRequest(user_id=user.id, address_id=second.id)
    )
    assert removed.removed
    again = await user_stub.RemoveAddress(
        pb.RemoveAddressRequest(user_id=user.id, address_id=second.id)
    )
    assert not again.removed
    listed = (
        await user_stub.ListAddresses(pb.ListAddressesRequest(user_id=user.id), metadata=lsn_md)
    ).addresses
    assert [(a.id, a.is_default) for a in listed] == [(first.id, True)]


async def test_batch_get_users_answers_found_and_missing_ids(user_stub):
    users = [await register(user_stub) for _ in range(2)]
    async with user_stub.RegisterUser.open() as stream:
        email = f"batch-{uuid.uuid4().hex[:10]}@example.com"
        await stream.send_message(
            pb.RegisterUserRequest(email=email, password=PASSWORD, display_name="Bo"), end=True
        )
        users.append((await stream.recv_message()).user)
        await stream.recv_trailing_metadata()
    lsn = stream.trailing_metadata["x-shop-lsn"]  # the replica read sees all three
    ids = [u.id for u in users]
    reply = await user_stub.BatchGetUsers(
        pb.BatchGetUsersRequest(ids=[*ids, "u-missing-1", ids[0], "u-missing-1"]),
        metadata={"x-shop-lsn": lsn},
    )
    assert sorted((u.id, u.email, u.display_name) for u in reply.users) == sorted(
        (u.id, u.email, u.display_name) for u in users
    )
    assert list(reply.missing_ids) == ["u-missing-1"]


async def test_batch_get_users_is_for_notification_only(user_app):
    """ACCESS_INTERNAL with callers [notification]: another service's identity is refused."""
    channel = as_service(Channel("127.0.0.1", user_app.grpc_port), "order")
    try:
        stub = user_grpc.UserServiceStub(channel)
        status = await code_of(stub.BatchGetUsers(pb.BatchGetUsersRequest(ids=["u-1"])))
    finally:
        channel.close()
    assert status is Status.PERMISSION_DENIED


async def test_unknown_user_is_not_found(user_stub):
    assert await code_of(user_stub.GetUser(pb.GetUserRequest(id="u-missing"))) is Status.NOT_FOUND
    assert (
        await code_of(user_stub.AddAddress(pb.AddAddressRequest(user_id="u-missing", address=HOME)))
        is Status.NOT_FOUND
    )
    assert (
        await code_of(
            user_stub.UpdateProfile(pb.UpdateProfileRequest(id="u-missing", display_name="x"))
        )
        is Status.NOT_FOUND
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RegisterUserRequest(email="nope", password=PASSWORD, display_name="A"), "email"),
        (pb.RegisterUserRequest(email="a@b.co", password="short", display_name="A"), "password"),
        (
            pb.RegisterUserRequest(email="a@b.co", password=PASSWORD, display_name=""),
            "display_name",
        ),
        (pb.UpdateProfileRequest(id="u-1", phone="0301234"), "phone"),
        (pb.AddAddressRequest(user_id="u-1"), "address"),
        (
            pb.AddAddressRequest(
                user_id="u-1",
                address=common_pb2.Address(
                    recipient_name="A", line1="x", city="c", postal_code="1", country_code="de"
                ),
            ),
            "address.country_code",
        ),
        (pb.GetUserRequest(id="../etc"), "id"),
    ],
)
async def test_validation_names_the_field(user_stub, request_, field):
    method = getattr(user_stub, type(request_).__name__.removesuffix("Request"))
    with pytest.raises(GRPCError) as err:
        await method(request_)
    assert err.value.status is Status.INVALID_ARGUMENT
    assert err.value.message.startswith(f"{field}: ")
    assert PASSWORD not in err.value.message


async def test_passwords_never_appear_in_any_log_line(stack):
    """Every log line of a user server (access lines included, at DEBUG) through register,
    duplicate register, failed and successful checks, a validation error and an unexpected
    DB failure during register: neither the password, a wrong guess nor a hash is written."""
    from grpclib.client import Channel

    from services.runtime.auth import RuntimeAuth
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics
    from services.runtime.server import App, ServerConfig
    from services.user.config import UserConfig
    from services.user.handlers import UserHandlers
    from services.user.passwords import Argon2Hasher
    from services.user.repository import SqlUserUnitOfWork
    from shop.user.v1 import user_grpc
    from stack.callers import as_platform
    from tests.integration.log_lines import JsonLines

    secret, guess, other = (f"pw-{uuid.uuid4().hex}" for _ in range(3))
    email = f"logs-{uuid.uuid4().hex[:8]}@example.com"
    config = UserConfig.from_env({"USER_DB_STATEMENT_TIMEOUT_MS": "300"})
    metrics = Metrics("user-logs")
    db = Database(config.db, metrics, service="user-logs")
    app = App(
        ServerConfig(name="user-logs"),
        [UserHandlers(lambda: SqlUserUnitOfWork(db.unit_of_work()), Argon2Hasher(1, 1024))],
        [db],
        metrics=metrics,
        auth=RuntimeAuth.from_env("user-logs"),
    )
    await app.start()
    stack.require("auth")  # the demo admin's token for GetUser and the like
    channel = as_platform(Channel("127.0.0.1", app.grpc_port))
    stub = user_grpc.UserServiceStub(channel)
    locker = await asyncpg.connect(stack.pg_admin_dsn("user"))
    codes = []
    try:
        with JsonLines("user-logs") as logs:
            reg = pb.RegisterUserRequest(email=email, password=secret, display_name="L")
            bad = pb.RegisterUserRequest(email="nope", password=secret, display_name="L")
            calls = [
                stub.RegisterUser(reg),
                stub.RegisterUser(reg),
                stub.CheckCredentials(pb.CheckCredentialsRequest(email=email, password=guess)),
                stub.CheckCredentials(pb.CheckCredentialsRequest(email=email, password=secret)),
                stub.RegisterUser(bad),
            ]
            for call in calls:
                try:
                    await call
                    codes.append(Status.OK)
                except GRPCError as exc:
                    codes.append(exc.status)
            async with locker.transaction():
                await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                codes.append(
                    await code_of(
                        stub.RegisterUser(
                            pb.RegisterUserRequest(
                                email=f"x{email}", password=other, display_name="L"
                            )
                        )
                    )
                )
    finally:
        await locker.close()
        channel.close()
        await app.stop(drain_timeout=1)
    assert codes == [
        Status.OK,
        Status.ALREADY_EXISTS,
        Status.OK,  # valid=False
        Status.OK,
        Status.INVALID_ARGUMENT,
        Status.INTERNAL,
    ]
    lines = logs.lines
    assert sum('"msg": "rpc"' in line for line in lines) == 6  # the capture saw every call
    assert any('"msg": "unexpected error"' in line for line in lines)
    for word in (secret, guess, other, "$argon2id$"):  # nor a hash (SQL error parameters)
        assert not [line for line in lines if word in line], word
