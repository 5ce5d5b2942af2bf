"""gRPC adapter of the Catalog port (ProductService GetProduct, ListProducts): statuses
become the recommendation domain's errors here and only here."""

from __future__ import annotations

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from services.recommendation.domain import CatalogUnavailableError
from services.runtime.auth import authenticate_channel
from services.runtime.policy import method_policy
from services.runtime.rpc import call_metadata
from services.runtime.tracing import instrument_channel
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub

UNREACHABLE = (ConnectionError, OSError, StreamTerminatedError, TimeoutError)


class GrpcCatalog:
    """A runtime Resource owning its channel to the product service."""

    def __init__(self, host: str, port: int) -> None:
        self.channel = authenticate_channel(instrument_channel(Channel(host, port)))
        self.stub = ProductServiceStub(self.channel)
        self.get_timeout = method_policy("/shop.product.v1.ProductService/GetProduct").timeout_s
        self.list_timeout = method_policy("/shop.product.v1.ProductService/ListProducts").timeout_s

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.channel.close()

    async def category_of(self, product_id: str) -> str | None:
        req = product_pb2.GetProductRequest(id=product_id)
        try:
            reply = await self.stub.GetProduct(
                req, timeout=self.get_timeout, metadata=call_metadata()
            )
        except GRPCError as exc:
            if exc.status is Status.NOT_FOUND:
                return None
            raise CatalogUnavailableError(f"GetProduct: {exc.status.name}") from None
        except UNREACHABLE as exc:
            raise CatalogUnavailableError(f"product service unreachable: {exc}") from None
        return reply.product.category

    async def in_category(self, category: str, limit: int) -> list[str]:
        req = product_pb2.ListProductsRequest(category=category, page_size=limit)
        try:
            reply = await self.stub.ListProducts(
                req, timeout=self.list_timeout, metadata=call_metadata()
            )
        except GRPCError as exc:
            raise CatalogUnavailableError(f"ListProducts: {exc.status.name}") from None
        except UNREACHABLE as exc:
            raise CatalogUnavailableError(f"product service unreachable: {exc}") from None
        return [p.id for p in reply.products]
