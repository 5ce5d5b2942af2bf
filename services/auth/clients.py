"""The Users port over gRPC: UserService.CheckCredentials (an internal method, so the call
carries this service's service token, and a CLIENT span whose traceparent the user service
continues)."""

from __future__ import annotations

from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from services.auth.domain import Identity, UserServiceUnavailableError
from services.runtime.auth import ServiceIdentity
from services.runtime.tracing import instrument_channel
from shop.user.v1 import user_grpc, user_pb2


def role_name(value: int) -> str:
    # ROLE_ADMIN -> "admin": the token's roles claim uses the short lower-case names.
    return user_pb2.Role.Name(value).removeprefix("ROLE_").lower()


class GrpcUsers:
    def __init__(self, address: str, identity: ServiceIdentity, timeout_s: float = 3.0) -> None:
        host, _, port = address.rpartition(":")
        self.channel = identity.attach(instrument_channel(Channel(host or "127.0.0.1", int(port))))
        self.stub = user_grpc.UserServiceStub(self.channel)
        self.timeout_s = timeout_s

    async def check_credentials(self, email: str, password: str) -> Identity | None:
        try:
            reply = await self.stub.CheckCredentials(
                user_pb2.CheckCredentialsRequest(email=email, password=password),
                timeout=self.timeout_s,
            )
        except (ConnectionError, OSError, StreamTerminatedError, TimeoutError) as exc:
            # grpclib raises TimeoutError when our deadline passes; left alone it became an
            # INTERNAL answer to Login under load (found by the soak run).
            raise UserServiceUnavailableError(f"user service unreachable: {exc!r}") from None
        if not reply.valid:
            return None
        roles = tuple(sorted({role_name(r) for r in reply.user.roles if r} or {"customer"}))
        return Identity(reply.user.id, roles)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.channel.close()
