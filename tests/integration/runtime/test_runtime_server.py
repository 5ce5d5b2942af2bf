"""The runtime server over real gRPC on loopback: validation, error mapping, health,
reflection, metrics, trailers, drain. Uses an in-memory ProductService
(a stub built from its descriptor, mesh/stubs.py) so it needs no DB."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from google.rpc import error_details_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from mesh.stubs import Stub
from services.runtime.errors import NotFound
from services.runtime.policy import Access, CallInfo
from services.runtime.server import App, ServerConfig
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb


async def get_product(request: pb.GetProductRequest) -> pb.GetProductResponse:
    """Answers from memory; `boom` raises an unexpected error, `slow` sleeps."""
    if request.id == "boom":
        raise RuntimeError("secret internals: password=hunter2")
    if request.id == "slow":
        await asyncio.sleep(0.5)
        return pb.GetProductResponse(product=pb.Product(id="slow"))
    if request.id != "p-0001":
        raise NotFound(f"product {request.id} not found")
    return pb.GetProductResponse(product=pb.Product(id="p-0001", name="Mug"))


def memory_products() -> Stub:
    """A ProductService from its descriptor answering GetProduct only."""
    return Stub(pb.DESCRIPTOR.services_by_name["ProductService"], {"GetProduct": get_product})


class FlakyDep:
    """A resource whose health the test flips."""

    def __init__(self) -> None:
        self.ok = True
        self.events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    def health_checks(self):
        async def check() -> bool:
            return self.ok

        return {"flaky": (check, True)}


@pytest.fixture
async def app():
    seen: list[CallInfo] = []

    async def auth(info: CallInfo) -> None:
        seen.append(info)

    dep = FlakyDep()
    a = App(
        ServerConfig(name="rt-test", health_interval_s=0.05),
        [memory_products()],
        [dep],
        auth=auth,
    )
    await a.start()
    a.dep = dep  # type: ignore[attr-defined]
    a.auth_seen = seen  # type: ignore[attr-defined]
    yield a
    await a.stop(drain_timeout=1)


@pytest.fixture
async def channel(app):
    ch = Channel("127.0.0.1", app.grpc_port)
    yield ch
    ch.close()


async def test_ok_call_has_trace_trailer_and_auth_hook_sees_policy(app, channel):
    stub = product_grpc.ProductServiceStub(channel)
    async with stub.GetProduct.open(metadata={"x-request-id": "trace-123"}) as stream:
        await stream.send_message(pb.GetProductRequest(id="p-0001"), end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    assert reply.product.name == "Mug"
    assert stream.trailing_metadata["x-request-id"] == "trace-123"
    assert app.auth_seen[-1].policy.access is Access.PUBLIC
    assert app.auth_seen[-1].policy.timeout_ms == 2000


async def test_invalid_request_names_field_with_bad_request_details(channel):
    stub = product_grpc.ProductServiceStub(channel)
    with pytest.raises(GRPCError) as err:
        await stub.GetProduct(pb.GetProductRequest(id="has space"))
    assert err.value.status is Status.INVALID_ARGUMENT
    assert err.value.message.startswith("id: ")
    (details,) = err.value.details
    assert isinstance(details, error_details_pb2.BadRequest)
    assert details.field_violations[0].field == "id"


class _RawBody:
    """A request whose bytes are given as they are: lets a test send what no client would."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


async def test_undecodable_body_is_invalid_argument_not_internal(channel):
    nested_groups = b"\x0b" * 10000 + b"\x0c" * 10000  # deeper than the parser allows
    path = "/shop.product.v1.ProductService/GetProduct"
    async with channel.request(
        path, Cardinality.UNARY_UNARY, _RawBody, pb.GetProductResponse
    ) as stream:
        await stream.send_message(_RawBody(nested_groups), end=True)
        with pytest.raises(GRPCError) as err:
            await stream.recv_message()
    assert err.value.status is Status.INVALID_ARGUMENT
    assert "request" in err.value.message


async def test_domain_not_found_maps_to_not_found(channel):
    stub = product_grpc.ProductServiceStub(channel)
    with pytest.raises(GRPCError) as err:
        await stub.GetProduct(pb.GetProductRequest(id="p-9999"))
    assert err.value.status is Status.NOT_FOUND
    assert "p-9999" in err.value.message


async def test_unexpected_error_is_internal_with_trace_id_and_no_internals(channel):
    stub = product_grpc.ProductServiceStub(channel)
    with pytest.raises(GRPCError) as err:
        await stub.GetProduct(pb.GetProductRequest(id="boom"), metadata={"x-request-id": "t-9"})
    assert err.value.status is Status.INTERNAL
    assert "t-9" in err.value.message
    assert "hunter2" not in err.value.message and "RuntimeError" not in err.value.message


async def test_health_follows_dependency_check(app, channel):
    health = HealthStub(channel)
    reply = await health.Check(HealthCheckRequest(service=""))
    assert reply.status == HealthCheckResponse.SERVING
    app.dep.ok = False
    await asyncio.sleep(0.2)
    for name in ("", "shop.product.v1.ProductService", "flaky"):
        reply = await health.Check(HealthCheckRequest(service=name))
        assert reply.status == HealthCheckResponse.NOT_SERVING, name
    app.dep.ok = True
    await asyncio.sleep(0.2)
    assert (await health.Check(HealthCheckRequest())).status == HealthCheckResponse.SERVING


async def test_reflection_lists_services(channel):
    stub = ServerReflectionStub(channel)
    async with stub.ServerReflectionInfo.open() as stream:
        await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
        reply = await stream.recv_message()
    names = {s.name for s in reply.list_services_response.service}
    assert "shop.product.v1.ProductService" in names
    assert "grpc.health.v1.Health" in names


async def test_metrics_count_calls_by_method_and_code(app, channel):
    stub = product_grpc.ProductServiceStub(channel)
    await stub.GetProduct(pb.GetProductRequest(id="p-0001"))
    with pytest.raises(GRPCError):
        await stub.GetProduct(pb.GetProductRequest(id="p-4040"))
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{app.metrics_port}/metrics")).text
    path = "/shop.product.v1.ProductService/GetProduct"
    assert f'rpc_requests_total{{code="OK",method="{path}"}}' in text
    assert f'rpc_requests_total{{code="NOT_FOUND",method="{path}"}}' in text
    assert f'rpc_duration_seconds_count{{method="{path}"}}' in text


async def test_shutdown_drains_in_flight_then_closes_resources():
    dep = FlakyDep()
    a = App(ServerConfig(name="rt-drain"), [memory_products()], [dep])
    await a.start()
    ch = Channel("127.0.0.1", a.grpc_port)
    try:
        stub = product_grpc.ProductServiceStub(ch)
        slow = asyncio.ensure_future(stub.GetProduct(pb.GetProductRequest(id="slow")))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(a.stop(drain_timeout=5))
        await asyncio.sleep(0.05)
        # a new call during the drain is refused (retryable), the slow one completes
        with pytest.raises(GRPCError) as err:
            await stub.GetProduct(pb.GetProductRequest(id="p-0001"))
        assert err.value.status is Status.UNAVAILABLE
        assert (await slow).product.id == "slow"
        await stopping
        assert dep.events == ["open", "close"]
    finally:
        ch.close()
