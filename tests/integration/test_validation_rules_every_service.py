"""Every buf.validate rule of every service in the descriptor set, against the stack's running
services over real gRPC: one request per rule, built from a valid request generated from the
rules (valid_requests.py) by breaking that rule alone (validation_cases.py), is answered
INVALID_ARGUMENT naming the field. Nothing here names a service or a method: a new RPC or a
new service of the manifest is covered by its .proto alone. Calls carry a token its policy
accepts (stack.callers.as_platform), so they reach the validation, not the auth check.
"""

from __future__ import annotations

import importlib

import pytest
from grpclib.client import Channel

from mesh.api import load
from mesh.generate import DESCRIPTOR
from shop.topology import SERVICES
from stack.callers import as_platform
from tests.integration.valid_requests import valid_requests
from tests.integration.validation_cases import (
    Case,
    assert_cover_every_rule,
    assert_refused_naming_the_field,
    cases,
    rules_of_service,
)

pytestmark = pytest.mark.stack


def _services() -> list[tuple[str, object, list[Case], list, dict]]:
    out = []
    for svc in load(DESCRIPTOR).services:
        if svc.short not in SERVICES:
            continue
        module = importlib.import_module(f"{svc.package}.{svc.short}_pb2")
        descriptor = module.DESCRIPTOR.services_by_name[svc.full_name.rsplit(".", 1)[1]]
        valid = valid_requests(descriptor)
        rules = rules_of_service(descriptor)
        built, missing = cases(rules, valid)
        out.append((svc.short, descriptor, built, missing, valid))
    return out


SERVICES_UNDER_TEST = _services()
CASES = [(short, case) for short, _, built, _, _ in SERVICES_UNDER_TEST for case in built]


def test_the_platform_services_are_covered():
    assert {"product", "user", "order", "auth"} <= {s for s, *_ in SERVICES_UNDER_TEST}


@pytest.mark.parametrize("entry", SERVICES_UNDER_TEST, ids=[e[0] for e in SERVICES_UNDER_TEST])
def test_every_rule_of_the_service_has_a_case(entry):
    _, descriptor, built, missing, valid = entry
    assert_cover_every_rule(descriptor, valid, rules_of_service(descriptor), built, missing)


@pytest.fixture(scope="module")
def up(stack) -> None:
    for short, *_ in SERVICES_UNDER_TEST:
        stack.require(short)


def _stub(short: str, descriptor) -> tuple[object, Channel]:  # type: ignore[no-untyped-def]
    package = descriptor.full_name.rsplit(".", 1)[0]
    grpc_module = importlib.import_module(f"{package}.{short}_grpc")
    channel = as_platform(Channel("127.0.0.1", SERVICES[short].port))
    return getattr(grpc_module, f"{descriptor.name}Stub")(channel), channel


DESCRIPTORS = {short: descriptor for short, descriptor, *_ in SERVICES_UNDER_TEST}


@pytest.mark.parametrize("entry", CASES, ids=[f"{s}:{c.id}" for s, c in CASES])
async def test_each_rule_is_invalid_argument_naming_the_field(up, entry):
    short, case = entry
    stub, channel = _stub(short, DESCRIPTORS[short])
    try:
        await assert_refused_naming_the_field(stub, case)
    finally:
        channel.close()
