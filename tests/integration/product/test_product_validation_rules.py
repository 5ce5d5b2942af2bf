"""Every buf.validate rule of every ProductService request, over real gRPC: one request per
rule, breaking only that rule, answered INVALID_ARGUMENT naming the field. Valid requests
(tests/integration/valid_requests.py) and the cases (validation_cases.py) are generated from
the descriptors."""

from __future__ import annotations

import pytest

from shop.product.v1 import product_pb2 as pb
from tests.integration.valid_requests import valid_requests
from tests.integration.validation_cases import (
    Case,
    assert_cover_every_rule,
    assert_refused_naming_the_field,
    cases,
    rules_of_service,
)

pytestmark = pytest.mark.stack

SERVICE = pb.DESCRIPTOR.services_by_name["ProductService"]

# One valid request per method, generated from the rules (every field with rules set, so
# each rule is live and a case differs from a request the service accepts by one field): a
# new RPC is covered by its .proto alone.
VALID = valid_requests(SERVICE)

RULES = rules_of_service(SERVICE)
CASES, MISSING = cases(RULES, VALID)


def test_every_rule_bearing_field_has_cases_for_all_its_rules():
    assert_cover_every_rule(SERVICE, VALID, RULES, CASES, MISSING)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(product_stub, case: Case):
    await assert_refused_naming_the_field(product_stub, case)
