"""Helpers of the cart integration tests: shoppers with real tokens, calls that echo the
read-your-writes LSN, polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grpclib.client import Channel

from services.runtime.context import LSN_HEADER
from shop.auth.v1 import auth_grpc, auth_pb2
from shop.cart.v1 import cart_pb2
from shop.topology import SERVICES
from shop.user.v1 import user_grpc, user_pb2


@dataclass
class Shopper:
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


async def new_shopper() -> Shopper:
    """A registered user of the stack and their access token."""
    email = f"cart-{uuid.uuid4().hex[:12]}@example.com"
    user_ch = Channel("127.0.0.1", SERVICES["user"].port)
    auth_ch = Channel("127.0.0.1", SERVICES["auth"].port)
    try:
        user = (
            await user_grpc.UserServiceStub(user_ch).RegisterUser(
                user_pb2.RegisterUserRequest(
                    email=email, password="correct horse", display_name="Cart"
                )
            )
        ).user
        tokens = (
            await auth_grpc.AuthServiceStub(auth_ch).Login(
                auth_pb2.LoginRequest(email=email, password="correct horse")
            )
        ).tokens
    finally:
        user_ch.close()
        auth_ch.close()
    return Shopper(user.id, tokens.access_token)


async def call(method: Any, request: Any, who: Shopper, lsn: str = "") -> tuple[Any, str]:
    """One unary call as `who`, echoing `lsn` (read-your-writes); (reply, the call's LSN)."""
    metadata = {**who.auth, **({LSN_HEADER: lsn} if lsn else {})}
    async with method.open(metadata=metadata) as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    return reply, dict(stream.trailing_metadata or {}).get(LSN_HEADER, lsn)


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


async def add(carts: Any, who: Shopper, product_id: str, quantity: int, lsn: str = "") -> Any:
    """AddItem to `who`'s own cart; (reply, LSN)."""
    req = cart_pb2.AddItemRequest(user_id=who.user_id, product_id=product_id, quantity=quantity)
    return await call(carts.AddItem, req, who, lsn)
