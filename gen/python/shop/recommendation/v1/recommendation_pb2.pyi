from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from shop.mesh.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendationSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMENDATION_SOURCE_UNSPECIFIED: _ClassVar[RecommendationSource]
    RECOMMENDATION_SOURCE_ALSO_BOUGHT: _ClassVar[RecommendationSource]
    RECOMMENDATION_SOURCE_SAME_CATEGORY: _ClassVar[RecommendationSource]
RECOMMENDATION_SOURCE_UNSPECIFIED: RecommendationSource
RECOMMENDATION_SOURCE_ALSO_BOUGHT: RecommendationSource
RECOMMENDATION_SOURCE_SAME_CATEGORY: RecommendationSource

class ListRecommendationsRequest(_message.Message):
    __slots__ = ("product_id", "limit")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    limit: int
    def __init__(self, product_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("product_id", "orders_together")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDERS_TOGETHER_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    orders_together: int
    def __init__(self, product_id: _Optional[str] = ..., orders_together: _Optional[int] = ...) -> None: ...

class ListRecommendationsResponse(_message.Message):
    __slots__ = ("recommendations", "source")
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    source: RecommendationSource
    def __init__(self, recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., source: _Optional[_Union[RecommendationSource, str]] = ...) -> None: ...
