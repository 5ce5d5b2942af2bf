"""gRPC handlers of shop.recommendation.v1.RecommendationService: request -> use case ->
response. Validation (buf.validate), errors and metrics are the runtime server's."""

from __future__ import annotations

from collections.abc import Callable

from services.recommendation import service
from services.recommendation.domain import Source
from services.recommendation.ports import Catalog, CoPurchaseUnitOfWork
from services.runtime.rpc import unary
from shop.recommendation.v1 import recommendation_pb2 as pb
from shop.recommendation.v1.recommendation_grpc import RecommendationServiceBase

SOURCES = {
    Source.ALSO_BOUGHT: pb.RECOMMENDATION_SOURCE_ALSO_BOUGHT,
    Source.SAME_CATEGORY: pb.RECOMMENDATION_SOURCE_SAME_CATEGORY,
}


class RecommendationHandlers(RecommendationServiceBase):
    def __init__(self, uow: Callable[[], CoPurchaseUnitOfWork], catalog: Catalog) -> None:
        self.uow = uow
        self.catalog = catalog

    @unary
    async def ListRecommendations(
        self, request: pb.ListRecommendationsRequest
    ) -> pb.ListRecommendationsResponse:
        result = await service.recommend(
            request.product_id, request.limit, self.uow(), self.catalog
        )
        return pb.ListRecommendationsResponse(
            recommendations=[
                pb.Recommendation(product_id=s.product_id, orders_together=s.orders_together)
                for s in result.suggestions
            ],
            source=SOURCES[result.source],
        )
