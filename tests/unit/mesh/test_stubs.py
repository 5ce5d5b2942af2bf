"""mesh/stubs.py: a stand-in servicer for any service, built from its descriptor."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from grpclib.testing import ChannelFor

from mesh.stubs import EMPTY, Stub, service_of
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["ProductService"]


def test_every_method_of_the_descriptor_is_served_with_its_message_types():
    mapping = Stub(SERVICE).__mapping__()
    assert set(mapping) == {f"/shop.product.v1.ProductService/{m.name}" for m in SERVICE.methods}
    get = mapping["/shop.product.v1.ProductService/GetProduct"]
    assert get.request_type is pb.GetProductRequest
    assert get.reply_type is pb.GetProductResponse


def test_an_answer_for_a_method_the_service_lacks_is_refused():
    with pytest.raises(ValueError, match="NoSuchMethod"):
        Stub(SERVICE, {"NoSuchMethod": pb.GetProductResponse()})


async def test_answers_come_from_the_table_or_the_default():
    async def get(req: pb.GetProductRequest) -> pb.GetProductResponse:
        return pb.GetProductResponse(product=pb.Product(id=req.id, name="from a function"))

    listed = pb.ListProductsResponse(next_page_token="t")
    stub = Stub(SERVICE, {"GetProduct": get, "ListProducts": listed})
    empty = Stub(SERVICE, default=EMPTY)
    async with ChannelFor([stub]) as channel, ChannelFor([empty]) as channel2:
        client = product_grpc.ProductServiceStub(channel)
        reply = await client.GetProduct(pb.GetProductRequest(id="p-7"))
        assert (reply.product.id, reply.product.name) == ("p-7", "from a function")
        assert (await client.ListProducts(pb.ListProductsRequest())).next_page_token == "t"
        with pytest.raises(GRPCError) as err:
            await client.ReleaseStock(pb.ReleaseStockRequest(order_id="o"))
        assert err.value.status is Status.UNIMPLEMENTED
        other = product_grpc.ProductServiceStub(channel2)
        assert await other.ReleaseStock(pb.ReleaseStockRequest()) == pb.ReleaseStockResponse()
    assert stub.calls == {"GetProduct": 1, "ListProducts": 1, "ReleaseStock": 1}


async def test_a_service_of_another_descriptor_set_gets_classes_of_its_own():
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet()
    for module in (pb,):
        for dep in module.DESCRIPTOR.dependencies:
            _add(fds, dep)
        fds.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
    service = service_of(fds.SerializeToString(), "shop.product.v1.ProductService")
    handler = Stub(service).__mapping__()["/shop.product.v1.ProductService/GetProduct"]
    assert handler.request_type is not pb.GetProductRequest  # a pool of its own
    assert handler.request_type.DESCRIPTOR.full_name == "shop.product.v1.GetProductRequest"
    assert isinstance(Server([Stub(service)]), Server)


def _add(fds, fd) -> None:
    if any(f.name == fd.name for f in fds.file):
        return
    for dep in fd.dependencies:
        _add(fds, dep)
    fds.file.add().ParseFromString(fd.serialized_pb)


async def test_on_call_sees_every_calls_metadata():
    seen: list[tuple[str, dict[str, str]]] = []
    stub = Stub(SERVICE, default=EMPTY, on_call=lambda path, md: seen.append((path, md)))
    async with ChannelFor([stub]) as channel:
        client = product_grpc.ProductServiceStub(channel)
        await client.GetProduct(pb.GetProductRequest(id="p-1"), metadata={"x-who": "edge"})
    assert [(p, md.get("x-who")) for p, md in seen] == [
        ("/shop.product.v1.ProductService/GetProduct", "edge")
    ]
