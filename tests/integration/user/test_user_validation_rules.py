"""Every buf.validate rule of every UserService request, over real gRPC: one request per
rule, generated from the descriptors, breaking only that rule, answered INVALID_ARGUMENT
naming the field (tests/integration/validation_cases.py builds them)."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from services.runtime.validation import violations
from shop.common.v1 import common_pb2
from shop.user.v1 import user_pb2 as pb
from tests.integration.validation_cases import (
    Case,
    cases,
    expected_message,
    field_of,
    rule_bearing_fields,
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
    assert {m.name for m in SERVICE.methods} == set(VALID)
    assert all(violations(msg) == [] for msg in VALID.values())
    assert MISSING == [], f"no violating request built for: {MISSING}"
    assert len(CASES) == len(RULES) > 0
    assert {field_of(c) for c in CASES} == rule_bearing_fields(SERVICE)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(user_stub, case: Case):
    with pytest.raises(GRPCError) as err:
        await getattr(user_stub, case.rule.method)(case.request)
    assert err.value.status is Status.INVALID_ARGUMENT, err.value.message
    assert err.value.message.startswith(f"{case.rule.path}: ")
    assert err.value.message == expected_message(case)
    fields = {v.field for d in err.value.details or [] for v in d.field_violations}
    assert fields == {case.rule.path}
