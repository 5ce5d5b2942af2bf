"""Every method of every service in the descriptor set gets a valid request generated from
its buf.validate rules, and one breaking request per rule, with no table kept by hand: an
RPC added to a .proto is covered by the rule tests as it is (tests/integration/
valid_requests.py, validation_cases.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import protovalidate
import pytest
from google.protobuf import descriptor_pb2

from tests.integration.valid_requests import valid_request, valid_requests
from tests.integration.validation_cases import assert_cover_every_rule, cases, rules_of_service

ROOT = Path(__file__).resolve().parents[3]
DESCRIPTOR_SET = ROOT / "gen" / "descriptor" / "shop.binpb"


def _services() -> list:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    out = []
    for f in fds.file:
        if f.service and f.name.startswith("shop/"):
            module = importlib.import_module(
                f.name.removesuffix(".proto").replace("/", ".") + "_pb2"
            )
            out += [module.DESCRIPTOR.services_by_name[s.name] for s in f.service]
    return out


SERVICES = _services()


def test_the_descriptor_set_has_the_platform_services():
    assert {"ProductService", "UserService", "OrderService"} <= {s.name for s in SERVICES}


@pytest.mark.parametrize("service", SERVICES, ids=[s.full_name for s in SERVICES])
def test_valid_requests_cover_every_rule_of_the_service(service):
    valid = valid_requests(service)
    rules = rules_of_service(service)
    built, missing = cases(rules, valid)
    assert_cover_every_rule(service, valid, rules, built, missing)


def test_a_valid_request_sets_every_ruled_field_and_meets_its_rules():
    from shop.user.v1 import user_pb2

    method = user_pb2.DESCRIPTOR.services_by_name["UserService"].methods_by_name["AddAddress"]
    req = valid_request(method)
    assert protovalidate.collect_violations(req) == []
    assert req.user_id and req.address.line1 and len(req.address.country_code) == 2
    assert req.address.country_code.isupper()  # pattern ^[A-Z]{2}$
