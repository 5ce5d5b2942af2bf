import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from shop.common.v1 import common_pb2 as _common_pb2
from shop.mesh.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Rate(_message.Message):
    __slots__ = ("currency_code", "units", "nanos")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    units: int
    nanos: int
    def __init__(self, currency_code: _Optional[str] = ..., units: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class RateVersion(_message.Message):
    __slots__ = ("version", "base_currency_code", "effective_time", "rates")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    version: int
    base_currency_code: str
    effective_time: _timestamp_pb2.Timestamp
    rates: _containers.RepeatedCompositeFieldContainer[Rate]
    def __init__(self, version: _Optional[int] = ..., base_currency_code: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rates: _Optional[_Iterable[_Union[Rate, _Mapping]]] = ...) -> None: ...

class ListCurrenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCurrenciesResponse(_message.Message):
    __slots__ = ("currency_codes", "current")
    CURRENCY_CODES_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    currency_codes: _containers.RepeatedScalarFieldContainer[str]
    current: RateVersion
    def __init__(self, currency_codes: _Optional[_Iterable[str]] = ..., current: _Optional[_Union[RateVersion, _Mapping]] = ...) -> None: ...

class ConvertRequest(_message.Message):
    __slots__ = ("amounts", "to_currency_code", "rate_version")
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    TO_CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    RATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Money]
    to_currency_code: str
    rate_version: int
    def __init__(self, amounts: _Optional[_Iterable[_Union[_common_pb2.Money, _Mapping]]] = ..., to_currency_code: _Optional[str] = ..., rate_version: _Optional[int] = ...) -> None: ...

class ConvertResponse(_message.Message):
    __slots__ = ("amounts", "rate_version")
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    RATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Money]
    rate_version: int
    def __init__(self, amounts: _Optional[_Iterable[_Union[_common_pb2.Money, _Mapping]]] = ..., rate_version: _Optional[int] = ...) -> None: ...

class PublishRatesRequest(_message.Message):
    __slots__ = ("rates", "effective_time")
    RATES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    rates: _containers.RepeatedCompositeFieldContainer[Rate]
    effective_time: _timestamp_pb2.Timestamp
    def __init__(self, rates: _Optional[_Iterable[_Union[Rate, _Mapping]]] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishRatesResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: RateVersion
    def __init__(self, version: _Optional[_Union[RateVersion, _Mapping]] = ...) -> None: ...
