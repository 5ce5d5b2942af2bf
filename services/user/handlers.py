"""gRPC handlers of UserService: request -> command -> use case -> response.

Ownership: a user reads and changes only their own profile and addresses (an admin or a
service any); the runtime's auth hook has already verified the caller's token."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime.auth import require_self_or_admin
from services.runtime.convert import from_message, to_message
from services.runtime.rpc import unary
from services.user import service
from services.user.domain import (
    AddAddress,
    Address,
    CheckCredentials,
    RegisterUser,
    Role,
    SavedAddress,
    UpdateProfile,
    User,
)
from services.user.ports import PasswordHasher, UserUnitOfWork
from shop.common.v1 import common_pb2
from shop.user.v1 import user_grpc
from shop.user.v1 import user_pb2 as pb

_ROLES = {Role.CUSTOMER: pb.ROLE_CUSTOMER, Role.ADMIN: pb.ROLE_ADMIN}


def user_proto(u: User) -> pb.User:
    ts = Timestamp()
    ts.FromDatetime(u.created_at)
    return pb.User(
        id=u.id,
        email=u.email,
        display_name=u.display_name,
        phone=u.phone,
        roles=[_ROLES[r] for r in u.roles],
        create_time=ts,
    )


def to_address(a: common_pb2.Address) -> Address:
    return from_message(Address, a)


def saved_address_proto(s: SavedAddress) -> pb.SavedAddress:
    return pb.SavedAddress(
        id=s.id, is_default=s.is_default, address=to_message(common_pb2.Address, s.address)
    )


class UserHandlers(user_grpc.UserServiceBase):
    def __init__(self, uow: Callable[[], UserUnitOfWork], hasher: PasswordHasher) -> None:
        self.uow = uow
        self.hasher = hasher

    @unary
    async def RegisterUser(self, request: pb.RegisterUserRequest) -> pb.RegisterUserResponse:
        cmd = RegisterUser(request.email, request.password, request.display_name)
        user = await service.register_user(cmd, self.uow(), self.hasher)
        return pb.RegisterUserResponse(user=user_proto(user))

    @unary
    async def GetUser(self, request: pb.GetUserRequest) -> pb.GetUserResponse:
        require_self_or_admin(request.id)
        return pb.GetUserResponse(user=user_proto(await service.get_user(request.id, self.uow())))

    @unary
    async def BatchGetUsers(self, request: pb.BatchGetUsersRequest) -> pb.BatchGetUsersResponse:
        # ACCESS_INTERNAL: the runtime's auth hook lets only the callers the policy names
        # (notification) in, with their service identity.
        users, missing = await service.get_users(list(request.ids), self.uow())
        return pb.BatchGetUsersResponse(users=[user_proto(u) for u in users], missing_ids=missing)

    @unary
    async def UpdateProfile(self, request: pb.UpdateProfileRequest) -> pb.UpdateProfileResponse:
        require_self_or_admin(request.id)
        cmd = UpdateProfile(
            request.id,
            display_name=request.display_name if request.HasField("display_name") else None,
            phone=request.phone if request.HasField("phone") else None,
        )
        return pb.UpdateProfileResponse(
            user=user_proto(await service.update_profile(cmd, self.uow()))
        )

    @unary
    async def AddAddress(self, request: pb.AddAddressRequest) -> pb.AddAddressResponse:
        require_self_or_admin(request.user_id)
        cmd = AddAddress(request.user_id, to_address(request.address), request.make_default)
        saved = await service.add_address(cmd, self.uow())
        return pb.AddAddressResponse(address=saved_address_proto(saved))

    @unary
    async def ListAddresses(self, request: pb.ListAddressesRequest) -> pb.ListAddressesResponse:
        require_self_or_admin(request.user_id)
        saved = await service.list_addresses(request.user_id, self.uow())
        return pb.ListAddressesResponse(addresses=[saved_address_proto(s) for s in saved])

    @unary
    async def RemoveAddress(self, request: pb.RemoveAddressRequest) -> pb.RemoveAddressResponse:
        require_self_or_admin(request.user_id)
        removed = await service.remove_address(request.user_id, request.address_id, self.uow())
        return pb.RemoveAddressResponse(removed=removed)

    @unary
    async def CheckCredentials(
        self, request: pb.CheckCredentialsRequest
    ) -> pb.CheckCredentialsResponse:
        cmd = CheckCredentials(request.email, request.password)
        user = await service.check_credentials(cmd, self.uow(), self.hasher)
        if user is None:
            return pb.CheckCredentialsResponse(valid=False)
        return pb.CheckCredentialsResponse(valid=True, user=user_proto(user))
