"""Calling the local stack as someone, for tests, benchmarks and tools (dev only):

- as a named service: `as_service(channel, "order")` signs every call with order's own
  identity (its dev key, derived from the name: services/runtime/auth.py), so the call is
  allowed exactly where the schema names order among a method's callers;
- as the demo admin user (admin@shopmesh.local, loaded by services/user/demo.py):
  `as_admin(channel)` for admin actions (CreateProduct, UpdateOrderStatus) and for acting
  on any user's behalf, with a real access token from the auth service;
- `as_platform(channel)`: each call as someone the schema allows, what test setup needs:
  an internal method as the first service its policy names among its callers, any other
  protected method as the demo admin.

There is no all-powerful "service" identity: a test that needs one is asking for a
privilege no part of the system has.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
import time
from typing import Any

from services.runtime.auth import ServiceIdentity, authenticate_channel
from shop.topology import SERVICES

ADMIN_EMAIL = "admin@shopmesh.local"
ADMIN_PASSWORD = "shopmesh-admin"  # dev-only demo password (README, services/user/demo.py)
RENEW_AFTER_S = 300  # access tokens live 15 min (AUTH_ACCESS_TTL_S); renew well before


@functools.cache
def service_identity(name: str) -> ServiceIdentity:
    """Service `name`'s identity from <NAME>_IDENTITY_KEY, in dev its derived dev key."""
    return ServiceIdentity.from_env(name)


def as_service(channel: Any, name: str) -> Any:
    """Every call on `channel` carries `name`'s service token (unless it has its own)."""
    return authenticate_channel(channel, service_identity(name))


def service_bearer(name: str) -> dict[str, str]:
    return service_identity(name).metadata()


class AdminSession:
    """One login of the demo admin per process, renewed before the token gets old. One per
    process because the auth service throttles logins per account (10 a minute)."""

    def __init__(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
        self.email, self.password = email, password
        self._token = ""
        self._at = 0.0
        self._lock = threading.Lock()

    def _auth_address(self) -> tuple[str, int]:
        host, _, port = os.environ.get(
            "SHOPMESH_AUTH_ADDR", SERVICES["auth"].local_addr
        ).rpartition(":")
        return host or "127.0.0.1", int(port)

    async def _login(self) -> str:
        from grpclib.client import Channel
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        from shop.auth.v1 import auth_grpc, auth_pb2

        channel = Channel(*self._auth_address())
        try:
            stub = auth_grpc.AuthServiceStub(channel)
            req = auth_pb2.LoginRequest(email=self.email, password=self.password)
            for attempt in range(20):
                try:
                    return (await stub.Login(req, timeout=10)).tokens.access_token
                except GRPCError as exc:
                    wait = re.search(r"retry in (\d+) s", exc.message or "")
                    if exc.status is Status.UNAVAILABLE:
                        await asyncio.sleep(0.5 * (attempt + 1))
                    elif exc.status is Status.UNAUTHENTICATED and wait:  # throttled
                        await asyncio.sleep(min(int(wait.group(1)), 30))
                    else:
                        raise
                except (OSError, TimeoutError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"cannot log in as {self.email}")
        finally:
            channel.close()

    def _fresh(self) -> str:
        return self._token if time.monotonic() - self._at < RENEW_AFTER_S else ""

    async def token(self) -> str:
        if not self._fresh():
            token = await self._login()
            with self._lock:
                self._token, self._at = token, time.monotonic()
        return self._token

    def token_sync(self) -> str:
        """For synchronous callers (httpx tests, scripts); not from inside an event loop."""
        if not self._fresh():
            token = asyncio.run(self._login())
            with self._lock:
                self._token, self._at = token, time.monotonic()
        return self._token


ADMIN = AdminSession()


async def admin_bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {await ADMIN.token()}"}


def as_admin(channel: Any) -> Any:
    """Every call on `channel` carries the demo admin's access token (unless it has one)."""
    from grpclib.events import SendRequest, listen

    async def add_token(event: SendRequest) -> None:
        if "authorization" not in event.metadata:
            event.metadata["authorization"] = f"Bearer {await ADMIN.token()}"

    listen(channel, SendRequest, add_token)
    return channel


def as_platform(channel: Any) -> Any:
    """Every call on `channel` as someone its method's policy allows (unless the call has
    its own authorization): internal methods as their first named caller (e.g.
    ReserveStock as order), user and admin methods as the demo admin, public ones bare."""
    from grpclib.events import SendRequest, listen

    from services.runtime.policy import Access, method_policy

    async def add_token(event: SendRequest) -> None:
        if "authorization" in event.metadata:
            return
        policy = method_policy(event.method_name)
        if policy.access is Access.INTERNAL and policy.callers:
            token = service_identity(sorted(policy.callers)[0]).token()
        elif policy.access in (Access.USER, Access.ADMIN):
            token = await ADMIN.token()
        else:
            return
        event.metadata["authorization"] = f"Bearer {token}"

    listen(channel, SendRequest, add_token)
    return channel
