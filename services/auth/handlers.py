"""gRPC handlers of shop.auth.v1.AuthService: map the request, call one use case, map back."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.server import Stream

from services.auth.domain import TokenPair
from services.auth.service import AuthService
from services.auth.service_keys import ServiceKeys
from shop.auth.v1 import auth_grpc
from shop.auth.v1 import auth_pb2 as pb


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def to_proto(pair: TokenPair) -> pb.TokenPair:
    return pb.TokenPair(
        access_token=pair.access_token,
        access_token_expire_time=_ts(pair.access_expires_at),
        refresh_token=pair.refresh_token,
        refresh_token_expire_time=_ts(pair.refresh_expires_at),
        user_id=pair.user_id,
    )


def client_address(metadata: object, peer: str, trusted_hops: int) -> str:
    """The caller's address: the entry of x-forwarded-for `trusted_hops` from the right (NGINX
    and Envoy each append the address they saw), else the TCP peer. Entries further left
    were written by the client and are never trusted."""
    raw = getattr(metadata, "get", lambda _k: None)("x-forwarded-for")
    hops = [h.strip() for h in str(raw).split(",") if h.strip()] if raw else []
    if trusted_hops and len(hops) >= trusted_hops:
        return hops[-trusted_hops][:64]
    return peer


class AuthHandlers(auth_grpc.AuthServiceBase):
    def __init__(
        self,
        service: AuthService,
        trusted_hops: int,
        service_keys: ServiceKeys | None = None,
    ) -> None:
        self.service = service
        self.trusted_hops = trusted_hops
        # The services' identity public keys (AUTH_SERVICE_PUBLIC_KEYS).
        self.service_keys = service_keys or ServiceKeys({})

    async def Login(self, stream: Stream[pb.LoginRequest, pb.LoginResponse]) -> None:
        req = await stream.recv_message()
        assert req is not None
        peer = stream.peer.addr()
        address = client_address(stream.metadata, peer[0] if peer else "", self.trusted_hops)
        pair = await self.service.login(req.email, req.password, address)
        await stream.send_message(pb.LoginResponse(tokens=to_proto(pair)))

    async def RefreshToken(
        self, stream: Stream[pb.RefreshTokenRequest, pb.RefreshTokenResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        pair = await self.service.refresh(req.refresh_token)
        await stream.send_message(pb.RefreshTokenResponse(tokens=to_proto(pair)))

    async def Logout(self, stream: Stream[pb.LogoutRequest, pb.LogoutResponse]) -> None:
        req = await stream.recv_message()
        assert req is not None
        await self.service.logout(req.refresh_token)
        await stream.send_message(pb.LogoutResponse())

    async def GetJwks(self, stream: Stream[pb.GetJwksRequest, pb.GetJwksResponse]) -> None:
        await stream.recv_message()
        keys = [pb.Jwk(**jwk) for jwk in self.service.jwks()]
        await stream.send_message(pb.GetJwksResponse(keys=keys))

    async def GetServiceJwks(
        self, stream: Stream[pb.GetServiceJwksRequest, pb.GetServiceJwksResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        keys, owners = self.service_keys.jwks(req.service)
        await stream.send_message(
            pb.GetServiceJwksResponse(keys=[pb.Jwk(**k) for k in keys], key_services=owners)
        )
