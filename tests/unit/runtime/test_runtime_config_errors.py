"""Config parsing, error mapping, policy lookup and LSN helpers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from grpclib.const import Status

from services.runtime import errors
from services.runtime.config import ConfigError, load, secret, setting
from services.runtime.context import format_lsn, parse_lsn
from services.runtime.db import DatabaseConfig
from services.runtime.policy import Access, method_policy
from services.runtime.server import ServerConfig


@dataclass(frozen=True)
class DemoConfig:
    port: int = setting(50051)
    ratio: float = 0.5
    debug: bool = False
    tags: tuple[str, ...] = ()
    token: str = secret("dev-token")
    shared: str = setting("x", env="SHOPMESH_SHARED")


def test_typed_parsing_and_prefix():
    cfg = load(
        DemoConfig,
        "DEMO",
        {"DEMO_PORT": "6000", "DEMO_RATIO": "1.5", "DEMO_DEBUG": "yes", "DEMO_TAGS": "a, b"},
    )
    assert (cfg.port, cfg.ratio, cfg.debug, cfg.tags) == (6000, 1.5, True, ("a", "b"))
    assert cfg.token == "dev-token"  # dev default, SHOPMESH_ENV unset means dev


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"DEMO_PORT": "abc"}, "DEMO_PORT"),
        ({"DEMO_RATIO": "fast"}, "DEMO_RATIO"),
        ({"DEMO_DEBUG": "maybe"}, "DEMO_DEBUG"),
    ],
)
def test_bad_value_names_the_variable(env, var):
    with pytest.raises(ConfigError, match=var):
        load(DemoConfig, "DEMO", env)


def test_secret_has_no_default_outside_dev():
    with pytest.raises(ConfigError, match="DEMO_TOKEN"):
        load(DemoConfig, "DEMO", {"SHOPMESH_ENV": "prod"})
    cfg = load(DemoConfig, "DEMO", {"SHOPMESH_ENV": "prod", "DEMO_TOKEN": "s3cret"})
    assert cfg.token == "s3cret"
    with pytest.raises(ConfigError, match="DATA_DB_PASSWORD"):
        DatabaseConfig.from_env("DATA_DB", {"SHOPMESH_ENV": "staging"})


def test_explicit_env_name_and_per_service_defaults():
    cfg = load(DemoConfig, "DEMO", {"SHOPMESH_SHARED": "y"}, port=7000)
    assert (cfg.shared, cfg.port) == ("y", 7000)
    server = ServerConfig.from_env("PRODUCT", {}, name="product", grpc_port=50051)
    assert (server.name, server.grpc_port) == ("product", 50051)
    with pytest.raises(ConfigError, match="PRODUCT_GRPC_PORT"):
        ServerConfig.from_env("PRODUCT", {"PRODUCT_GRPC_PORT": "70000"})


def test_database_url_routes_replica_port():
    cfg = DatabaseConfig.from_env("P_DB", {"P_DB_NAME": "product"})
    assert cfg.url().endswith("@127.0.0.1:5432/product")
    assert cfg.url(replica=True).endswith("@127.0.0.1:5433/product")


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.NotFound("x"), Status.NOT_FOUND),
        (errors.InvalidArgument("f", "bad"), Status.INVALID_ARGUMENT),
        (errors.AlreadyExists("x"), Status.ALREADY_EXISTS),
        (errors.Conflict("x"), Status.ABORTED),
        (errors.FailedPrecondition("x"), Status.FAILED_PRECONDITION),
        (errors.PermissionDenied("x"), Status.PERMISSION_DENIED),
        (errors.Unauthenticated("x"), Status.UNAUTHENTICATED),
        (errors.Unavailable("x"), Status.UNAVAILABLE),
    ],
)
def test_domain_errors_map_to_status(exc, status):
    err, expected = errors.to_grpc_error(exc, "t-1")
    assert err.status is status and expected


def test_invalid_argument_message_names_field_and_carries_bad_request():
    err, _ = errors.to_grpc_error(errors.InvalidArgument("email", "already used"), "t")
    assert err.message == "email: already used"
    assert err.details[0].field_violations[0].field == "email"


def test_unexpected_error_hides_internals():
    err, expected = errors.to_grpc_error(KeyError("db password"), "trace-7")
    assert err.status is Status.INTERNAL and not expected
    assert "trace-7" in err.message and "password" not in err.message


def test_policy_from_schema():
    p = method_policy("/shop.product.v1.ProductService/ReserveStock")
    assert (p.access, p.idempotent, p.timeout_ms) == (Access.INTERNAL, True, 3000)
    assert method_policy("/shop.user.v1.UserService/RegisterUser").access is Access.PUBLIC
    assert method_policy("/shop.product.v1.ProductService/CreateProduct").access is Access.ADMIN


def test_lsn_round_trip_and_order():
    assert parse_lsn("0/16B3748") == 0x16B3748
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")
    assert format_lsn(parse_lsn("2A/BC0")) == "2A/BC0"


def test_invalid_argument_with_many_violations_fits_in_headers() -> None:
    """grpc-message and grpc-status-details-bin travel in HTTP headers (gRPC-Web errors are
    trailers-only): hundreds of violations must not make a header proxies refuse."""
    from google.rpc import error_details_pb2

    from services.runtime.errors import (
        MAX_MESSAGE,
        MAX_VIOLATIONS,
        FieldViolation,
        InvalidArgument,
        to_grpc_error,
    )

    many = [FieldViolation(f"lines[{i}].product_id", "x" * 200) for i in range(500)]
    err, expected = to_grpc_error(InvalidArgument.many(many), "t")
    assert expected
    assert len(err.message) <= MAX_MESSAGE + 40
    assert "500 in all" in err.message
    (details,) = err.details
    assert isinstance(details, error_details_pb2.BadRequest)
    assert len(details.field_violations) == MAX_VIOLATIONS
    assert details.field_violations[0].field == "lines[0].product_id"
