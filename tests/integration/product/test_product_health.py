"""The product service's health and errors with its real database: SERVING with it, NOT_SERVING
when it is down, and an unexpected database error logged with its trace while the client
gets a bare INTERNAL.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from shop.product.v1 import product_pb2 as pb
from tests.integration.product.product_helpers import new_product

pytestmark = pytest.mark.stack


async def test_health_serving_with_real_db(product_app, product_stub):
    from grpclib.client import Channel

    channel = Channel("127.0.0.1", product_app.grpc_port)
    try:
        health = HealthStub(channel)
        reply = await health.Check(HealthCheckRequest(service="shop.product.v1.ProductService"))
        assert reply.status == HealthCheckResponse.SERVING
        reply = await health.Check(HealthCheckRequest(service="postgres/product:replica"))
        assert reply.status == HealthCheckResponse.SERVING
    finally:
        channel.close()


async def test_db_down_health_not_serving_and_internal_error_hides_details(stack):
    """A product server whose database is unreachable (nothing listens on its port)."""
    from grpclib.client import Channel

    from services.product.config import ProductConfig
    from services.product.handlers import ProductHandlers
    from services.product.repository import SqlProductUnitOfWork
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics
    from services.runtime.server import App, ServerConfig
    from shop.product.v1 import product_grpc

    env = {"PRODUCT_DB_PRIMARY_PORT": "5499", "PRODUCT_DB_REPLICA_PORT": "5498"}
    config = ProductConfig.from_env(env)
    metrics = Metrics("product-down")
    db = Database(config.db, metrics, service="product-down")
    app = App(
        ServerConfig(name="product-down"),
        [ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))],
        [db],
        metrics=metrics,
        log_calls=False,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest())
        assert reply.status == HealthCheckResponse.NOT_SERVING
        with pytest.raises(GRPCError) as err:
            await product_grpc.ProductServiceStub(channel).GetProduct(
                pb.GetProductRequest(id="p-0001"), metadata={"x-request-id": "trace-db-down"}
            )
        assert err.value.status is Status.INTERNAL
        assert "trace-db-down" in err.value.message
        assert "5499" not in err.value.message and "asyncpg" not in err.value.message
    finally:
        channel.close()
        await app.stop(drain_timeout=1)


async def test_unexpected_db_error_is_logged_with_trace_while_client_gets_bare_internal(
    product_app, product_stub, stack
):
    """A real unexpected failure: the products table is locked by another session, so the
    UPDATE hits this server's statement timeout (asyncpg QueryCanceledError). The service log
    has an error line with the trace id and the stack; the client gets only INTERNAL."""
    from grpclib.client import Channel

    from services.product.config import ProductConfig
    from services.product.handlers import ProductHandlers
    from services.product.repository import SqlProductUnitOfWork
    from services.runtime.db import Database
    from services.runtime.metrics import Metrics
    from services.runtime.server import App, ServerConfig
    from shop.product.v1 import product_grpc
    from tests.integration.log_lines import JsonLines

    product = await new_product(product_stub)
    config = ProductConfig.from_env({"PRODUCT_DB_STATEMENT_TIMEOUT_MS": "300"})
    metrics = Metrics("product-timeout")
    db = Database(config.db, metrics, service="product-timeout")
    app = App(
        ServerConfig(name="product-timeout"),
        [ProductHandlers(lambda: SqlProductUnitOfWork(db.unit_of_work()))],
        [db],
        metrics=metrics,
    )
    await app.start()
    channel = Channel("127.0.0.1", app.grpc_port)
    locker = await asyncpg.connect(stack.pg_admin_dsn("product"))
    trace = f"trace-{uuid.uuid4().hex[:12]}"
    try:
        with JsonLines("product-timeout") as logs:
            async with locker.transaction():
                await locker.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(GRPCError) as err:
                    await product_grpc.ProductServiceStub(channel).UpdateProduct(
                        pb.UpdateProductRequest(id=product.id, name="never"),
                        metadata={"x-request-id": trace},
                    )
    finally:
        await locker.close()
        channel.close()
        await app.stop(drain_timeout=1)
    assert err.value.status is Status.INTERNAL
    assert err.value.message == f"internal error (trace id {trace})"
    assert err.value.details is None
    errors = [
        line for line in logs.parsed() if line["level"] == "error" and line.get("trace_id") == trace
    ]
    assert [line["msg"] for line in errors] == ["unexpected error"]
    assert errors[0]["service"] == "product-timeout"
    assert "QueryCanceledError" in errors[0]["exc"] and "Traceback" in errors[0]["exc"]
    access = [
        line for line in logs.parsed() if line["msg"] == "rpc" and line.get("trace_id") == trace
    ]
    assert [(a["method"], a["code"]) for a in access] == [
        ("/shop.product.v1.ProductService/UpdateProduct", "INTERNAL")
    ]
