"""Every buf.validate rule of every CartService request, over real gRPC with a shopper's
token: one request per rule, breaking only that rule, answered INVALID_ARGUMENT naming the
field, before any ownership check or write. Valid requests and the cases are generated from
the descriptors (tests/integration/valid_requests.py, validation_cases.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.events import SendRequest, listen

from shop.cart.v1 import cart_grpc
from shop.cart.v1 import cart_pb2 as pb
from tests.integration.cart.cart_helpers import Shopper
from tests.integration.valid_requests import valid_requests
from tests.integration.validation_cases import (
    Case,
    assert_cover_every_rule,
    assert_refused_naming_the_field,
    cases,
    rules_of_service,
)

pytestmark = pytest.mark.stack

SERVICE = pb.DESCRIPTOR.services_by_name["CartService"]
VALID = valid_requests(SERVICE)
RULES = rules_of_service(SERVICE)
CASES, MISSING = cases(RULES, VALID)


@pytest.fixture
async def shopper_stub(cart_app, shopper: Shopper) -> AsyncIterator[cart_grpc.CartServiceStub]:
    channel = Channel("127.0.0.1", cart_app.grpc_port)

    async def add_token(event: SendRequest) -> None:
        event.metadata["authorization"] = f"Bearer {shopper.token}"

    listen(channel, SendRequest, add_token)
    yield cart_grpc.CartServiceStub(channel)
    channel.close()


def test_every_rule_bearing_field_has_cases_for_all_its_rules():
    assert_cover_every_rule(SERVICE, VALID, RULES, CASES, MISSING)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(shopper_stub, case: Case):
    await assert_refused_naming_the_field(shopper_stub, case)
