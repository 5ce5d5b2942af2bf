"""Every buf.validate rule of every UserService request, over real gRPC: one request per
rule, generated from the descriptors, breaking only that rule, answered INVALID_ARGUMENT
naming the field (tests/integration/validation_cases.py builds them)."""

from __future__ import annotations

import pytest

from shop.common.v1 import common_pb2
from shop.user.v1 import user_pb2 as pb
from tests.integration.validation_cases import (
    Case,
    assert_cover_every_rule,
    assert_refused_naming_the_field,
    cases,
    rules_of_service,
)

pytestmark = pytest.mark.stack

SERVICE = pb.DESCRIPTOR.services_by_name["UserService"]
PASSWORD = "correct horse battery"
HOME = common_pb2.Address(
    recipient_name="Ada",
    line1="1 Main St",
    line2="Floor 2",
    city="Berlin",
    region="BE",
    postal_code="10115",
    country_code="DE",
)

# One valid request per method, every field with rules set, so each rule is live and a
# case differs from a request the service accepts by one field.
VALID = {
    "RegisterUser": pb.RegisterUserRequest(
        email="ada@example.com", password=PASSWORD, display_name="Ada"
    ),
    "GetUser": pb.GetUserRequest(id="u-1"),
    "UpdateProfile": pb.UpdateProfileRequest(id="u-1", display_name="Ada", phone="+4930123456"),
    "AddAddress": pb.AddAddressRequest(user_id="u-1", address=HOME),
    "ListAddresses": pb.ListAddressesRequest(user_id="u-1"),
    "RemoveAddress": pb.RemoveAddressRequest(user_id="u-1", address_id="a-1"),
    "CheckCredentials": pb.CheckCredentialsRequest(email="ada@example.com", password=PASSWORD),
}

RULES = rules_of_service(SERVICE)
CASES, MISSING = cases(RULES, VALID)


def test_every_rule_bearing_field_has_cases_for_all_its_rules():
    assert_cover_every_rule(SERVICE, VALID, RULES, CASES, MISSING)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(user_stub, case: Case):
    await assert_refused_naming_the_field(user_stub, case)
