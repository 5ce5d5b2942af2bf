"""Kafka event types generated from schemas/avro by tools/gen_events.py. DO NOT EDIT."""
# ruff: noqa
# fmt: off

from dataclasses_avroschema import AvroModel
from dataclasses_avroschema import types
import dataclasses
import datetime
import enum
import typing
import uuid


@dataclasses.dataclass
class Money(AvroModel):
    """
    An amount in one currency: units plus nanos (10^-9 units), as shop.common.v1.Money.
    """
    currency_code: str = dataclasses.field(metadata={'doc': 'ISO 4217 code, e.g. USD.'})
    units: int = dataclasses.field(metadata={'doc': 'Whole units.'})
    nanos: types.Int32 = dataclasses.field(metadata={'doc': 'Nano units, same sign as units.'}, default=0)


@dataclasses.dataclass
class OrderLine(AvroModel):
    """
    One product of the order at the catalog price it was sold at.
    """
    product_id: str
    product_name: str
    quantity: types.Int32
    unit_price: Money


@dataclasses.dataclass
class Charge(AvroModel):
    """
    What the shopper is charged: the order's lines converted into the currency they chose (at a rate version of the currency service) plus shipping. Null on orders placed before orders had a currency.
    """
    currency_code: str = dataclasses.field(metadata={'doc': 'ISO 4217 code of every amount below.'})
    rate_version: int = dataclasses.field(metadata={'doc': 'Currency rate version used; 0: no conversion.'})
    unit_prices: typing.List[Money] = dataclasses.field(metadata={'doc': "Each line's unit price in currency_code, in the order of lines."})
    shipping_quote_id: str = dataclasses.field(metadata={'doc': 'The shipping quote; empty: the default shipping rule.'})
    shipping_cost: Money
    grand_total: Money = dataclasses.field(metadata={'doc': 'Converted lines plus shipping.'})


@dataclasses.dataclass
class OrderPlaced(AvroModel):
    """
    An order was accepted and its stock reserved (status CONFIRMED). Topic shop.orders.v1, key = order_id. Headers: event_id (same as the field), traceparent and tracestate (W3C trace context of the request that placed the order), content-type.
    """
    event_id: uuid.UUID = dataclasses.field(metadata={'doc': 'Unique per event; consumers dedupe on it.'})
    occurred_at: datetime.datetime = dataclasses.field(metadata={'doc': 'When the order was placed (UTC).'})
    order_id: str
    user_id: str
    lines: typing.List[OrderLine]
    total: Money
    shipping_city: str = dataclasses.field(metadata={'doc': 'City of the shipping address, for the confirmation email.'}, default="")
    shipping_country_code: str = ""
    charge: typing.Optional[Charge] = dataclasses.field(metadata={'doc': "The charge in the shopper's currency (added with currencies; null when absent)."}, default=None)

    
    class Meta:
        namespace = "shop.events.v1"

class OrderStatus(str, enum.Enum):
    """
    Order status, as shop.order.v1.OrderStatus without the prefix.
    """
    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"

    @enum.nonmember
    class Meta:
        default = "UNKNOWN"

@dataclasses.dataclass
class OrderStatusChanged(AvroModel):
    """
    An order moved to another status (paid, shipped, delivered, cancelled). Topic shop.orders.v1, key = order_id. Headers as OrderPlaced.
    """
    event_id: uuid.UUID = dataclasses.field(metadata={'doc': 'Unique per event; consumers dedupe on it.'})
    occurred_at: datetime.datetime
    order_id: str
    user_id: str
    previous_status: OrderStatus
    status: OrderStatus
    reason: typing.Optional[str] = dataclasses.field(metadata={'doc': 'Why, for a cancellation.'}, default=None)

    
    class Meta:
        namespace = "shop.events.v1"

@dataclasses.dataclass
class UserRegistered(AvroModel):
    """
    A user registered. Topic shop.users.v1, key = user_id. Headers: event_id, traceparent, tracestate.
    """
    event_id: uuid.UUID = dataclasses.field(metadata={'doc': 'Unique per event; consumers dedupe on it.'})
    occurred_at: datetime.datetime
    user_id: str
    email: str
    display_name: str

    
    class Meta:
        namespace = "shop.events.v1"


# Record full name -> the schema text from schemas/avro.
SCHEMAS: dict[str, str] = {
    'shop.events.v1.OrderPlaced': '{"doc":"An order was accepted and its stock reserved (status CONFIRMED). Topic shop.orders.v1, key = order_id. Headers: event_id (same as the field), traceparent and tracestate (W3C trace context of the request that placed the order), content-type.","fields":[{"doc":"Unique per event; consumers dedupe on it.","name":"event_id","type":{"logicalType":"uuid","type":"string"}},{"doc":"When the order was placed (UTC).","name":"occurred_at","type":{"logicalType":"timestamp-millis","type":"long"}},{"name":"order_id","type":"string"},{"name":"user_id","type":"string"},{"name":"lines","type":{"items":{"doc":"One product of the order at the catalog price it was sold at.","fields":[{"name":"product_id","type":"string"},{"name":"product_name","type":"string"},{"name":"quantity","type":"int"},{"name":"unit_price","type":{"doc":"An amount in one currency: units plus nanos (10^-9 units), as shop.common.v1.Money.","fields":[{"doc":"ISO 4217 code, e.g. USD.","name":"currency_code","type":"string"},{"doc":"Whole units.","name":"units","type":"long"},{"default":0,"doc":"Nano units, same sign as units.","name":"nanos","type":"int"}],"name":"Money","type":"record"}}],"name":"OrderLine","type":"record"},"type":"array"}},{"name":"total","type":"shop.events.v1.Money"},{"default":"","doc":"City of the shipping address, for the confirmation email.","name":"shipping_city","type":"string"},{"default":"","name":"shipping_country_code","type":"string"},{"default":null,"doc":"The charge in the shopper\'s currency (added with currencies; null when absent).","name":"charge","type":["null",{"doc":"What the shopper is charged: the order\'s lines converted into the currency they chose (at a rate version of the currency service) plus shipping. Null on orders placed before orders had a currency.","fields":[{"doc":"ISO 4217 code of every amount below.","name":"currency_code","type":"string"},{"doc":"Currency rate version used; 0: no conversion.","name":"rate_version","type":"long"},{"doc":"Each line\'s unit price in currency_code, in the order of lines.","name":"unit_prices","type":{"items":"Money","type":"array"}},{"doc":"The shipping quote; empty: the default shipping rule.","name":"shipping_quote_id","type":"string"},{"name":"shipping_cost","type":"Money"},{"doc":"Converted lines plus shipping.","name":"grand_total","type":"Money"}],"name":"Charge","type":"record"}]}],"name":"OrderPlaced","namespace":"shop.events.v1","type":"record"}',
    'shop.events.v1.OrderStatusChanged': '{"doc":"An order moved to another status (paid, shipped, delivered, cancelled). Topic shop.orders.v1, key = order_id. Headers as OrderPlaced.","fields":[{"doc":"Unique per event; consumers dedupe on it.","name":"event_id","type":{"logicalType":"uuid","type":"string"}},{"name":"occurred_at","type":{"logicalType":"timestamp-millis","type":"long"}},{"name":"order_id","type":"string"},{"name":"user_id","type":"string"},{"name":"previous_status","type":{"default":"UNKNOWN","doc":"Order status, as shop.order.v1.OrderStatus without the prefix.","name":"OrderStatus","symbols":["UNKNOWN","PENDING","CONFIRMED","PAID","SHIPPED","DELIVERED","CANCELLED"],"type":"enum"}},{"name":"status","type":"shop.events.v1.OrderStatus"},{"default":null,"doc":"Why, for a cancellation.","name":"reason","type":["null","string"]}],"name":"OrderStatusChanged","namespace":"shop.events.v1","type":"record"}',
    'shop.events.v1.UserRegistered': '{"doc":"A user registered. Topic shop.users.v1, key = user_id. Headers: event_id, traceparent, tracestate.","fields":[{"doc":"Unique per event; consumers dedupe on it.","name":"event_id","type":{"logicalType":"uuid","type":"string"}},{"name":"occurred_at","type":{"logicalType":"timestamp-millis","type":"long"}},{"name":"user_id","type":"string"},{"name":"email","type":"string"},{"name":"display_name","type":"string"}],"name":"UserRegistered","namespace":"shop.events.v1","type":"record"}',
}

# Topic -> the record full names it carries (TopicRecordNameStrategy subjects).
TOPICS: dict[str, list[str]] = {"shop.orders.v1": ["shop.events.v1.OrderPlaced", "shop.events.v1.OrderStatusChanged"], "shop.users.v1": ["shop.events.v1.UserRegistered"]}
