"""The OpenAPI document against the live gateway: a bounded property-based run
(schemathesis, positive data generated from /api/openapi.json as served) over every
operation, signed in as a fresh shopper, finds no 5xx, no status the document does not list,
no body that breaks its schema and no wrong content type.

It runs from a private loopback address (its own NGINX rate-limit bucket and its own key in
the auth service's login throttle), so fuzzing Login never locks anyone else out. Bounded:
a few examples per operation, no shrinking database, well under a minute on the dev box.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.edge_clients import bearer, private_loopback, register_and_login

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

EXAMPLES_PER_OPERATION = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _FromAddress(HTTPAdapter):
    """requests from one local address."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def base_url(stack) -> str:
    stack.require("nginx", "auth", "user", "product", "order", "notification")
    return stack.nginx_url


@pytest.fixture(scope="module")
def shopper(base_url: str) -> dict:
    with httpx.Client(base_url=base_url, timeout=15) as gw:
        return register_and_login(gw)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    adapter = _FromAddress(private_loopback())
    s.mount("http://", adapter)
    yield s
    s.close()


@pytest.fixture(scope="module")
def schema(base_url: str):  # type: ignore[no-untyped-def]
    """The document as the gateway serves it."""
    spec = httpx.get(f"{base_url}/api/openapi.json", timeout=15).json()
    return schemathesis.openapi.from_dict(spec)


def _operations() -> list:
    from mesh import openapi
    from mesh.api import load
    from mesh.generate import DESCRIPTOR

    spec = openapi.build(load(DESCRIPTOR))
    return [
        pytest.param(path, verb.upper(), id=f"{verb} {path}")
        for path, verbs in spec["paths"].items()
        for verb in verbs
    ]


OWN_ID_PARAMS = {"id", "user_id"}


@pytest.mark.parametrize(("path", "verb"), _operations())
def test_the_gateway_answers_as_the_document_says(
    schema, session, base_url: str, shopper: dict, path: str, verb: str
) -> None:
    operation = schema[path][verb]
    auth = bearer(shopper["access_token"])
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as is
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), own=st.booleans())
    def run(case, own: bool) -> None:
        # Half the time the shopper's own user id in the path, so user methods reach 200.
        if own and path.startswith("/api/v1/users/") and case.path_parameters:
            for name in OWN_ID_PARAMS & set(case.path_parameters):
                case.path_parameters[name] = shopper["user_id"]
        if own and isinstance(case.query, dict) and "user_id" in case.query:
            case.query["user_id"] = shopper["user_id"]
        case.call_and_validate(base_url=base_url, session=session, headers=auth, checks=CHECKS)

    run()
    assert time.monotonic() - started < 60, "keep the run bounded"
