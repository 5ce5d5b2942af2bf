"""Retries, fail-fast and internal-only routing, proven with counting upstreams.

Each test starts throwaway grpclib ProductService instances on spare ports and a private
Envoy whose config comes from the same generator as mesh/out (only the endpoints, ports
and health-check interval differ), so what is proven here is what the committed config does.
The internal listener checks who calls (mesh/jwt.py): calls there carry a token someone the
schema allows holds (stack/callers.py), verified with the stack's auth service's keys.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.server import Server

import shop.product.v1.product_pb2 as pb
from mesh import envoy
from mesh.api import load
from mesh.generate import DESCRIPTOR, OUT
from mesh.testing import CountingProduct, PrivateEnvoy, free_port
from shop.product.v1.product_grpc import ProductServiceStub
from stack.callers import as_platform, service_bearer


class Upstream:
    """A counting ProductService in this process (its calls are counted here)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.impl = CountingProduct()
        self.server = Server([self.impl, Health()])

    async def start(self) -> None:
        await self.server.start("127.0.0.1", self.port)

    async def kill(self) -> None:
        self.server.close()
        await self.server.wait_closed()


class Doomed:
    """A counting ProductService in its own process, to be SIGKILLed like a crashed pod:
    its connections die with it (grpclib's close() would keep serving open ones)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesh.testing", str(self.port), stdout=asyncio.subprocess.PIPE
        )
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)  # type: ignore[union-attr]
        assert line.strip() == b"serving"

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Mesh:
    def __init__(self, upstreams: list[Upstream], workdir: Path, **overrides: object) -> None:
        self.upstreams = upstreams
        self.edge, self.internal, self.admin = free_port(), free_port(), free_port()
        opt = envoy.EnvoyOptions(
            edge_port=self.edge,
            internal_port=self.internal,
            admin_port=self.admin,
            descriptor_path=str(OUT / "envoy" / "descriptor.binpb"),
            openapi_path=str(OUT / "openapi" / "openapi.json"),
            docs_path=str(OUT / "openapi" / "docs.html"),
            endpoints={"product": [("127.0.0.1", u.port) for u in upstreams]},
            # Long enough that a killed instance is still "healthy" during the test: what
            # is proven is the retry / fail-fast path, not the health checker.
            health_check_interval_s=60,
            access_log=False,
            **overrides,  # type: ignore[arg-type]
        )
        self.envoy = PrivateEnvoy(envoy.build(load(DESCRIPTOR), opt), workdir, self.admin)

    def stub(self, port: int, bare: bool = False) -> tuple[Channel, ProductServiceStub]:
        """A channel to `port` whose calls carry the credentials their method allows
        (CreateProduct: the demo admin; ReserveStock: order), or none when `bare`."""
        channel = Channel("127.0.0.1", port)
        return channel, ProductServiceStub(channel if bare else as_platform(channel))

    def stat(self, name: str) -> int:
        return self.envoy.stats().get(name, 0)


@pytest.fixture
async def mesh_of(stack, tmp_path) -> AsyncIterator:
    stack.require("auth")  # the keys the private Envoy verifies tokens with
    started: list[tuple[Mesh, list[Channel]]] = []

    async def make(n: int, doomed: bool = False, **overrides: object) -> Mesh:
        ups = [Doomed()] if doomed else []
        ups += [Upstream() for _ in range(n - len(ups))]
        for u in ups:
            await u.start()
        mesh = Mesh(ups, tmp_path / f"envoy{len(started)}", **overrides)
        await asyncio.to_thread(mesh.envoy.__enter__)
        started.append((mesh, []))
        return mesh

    yield make
    for mesh, _ in started:
        await asyncio.to_thread(mesh.envoy.__exit__)
        for u in mesh.upstreams:
            await u.kill()


async def test_idempotent_call_is_retried_until_it_succeeds(mesh_of) -> None:
    mesh = await mesh_of(1)
    impl = mesh.upstreams[0].impl
    impl.fail["GetProduct"] = 2  # the third attempt (second retry) succeeds
    channel, stub = mesh.stub(mesh.edge)
    try:
        reply = await stub.GetProduct(pb.GetProductRequest(id="p-1"), timeout=5)
    finally:
        channel.close()
    assert reply.product.id == "p-1"
    assert impl.calls["GetProduct"] == 3
    assert mesh.stat("cluster.product.upstream_rq_retry") == 2


async def test_retries_stop_after_two(mesh_of) -> None:
    mesh = await mesh_of(1)
    impl = mesh.upstreams[0].impl
    impl.fail["GetProduct"] = 10
    channel, stub = mesh.stub(mesh.edge)
    try:
        with pytest.raises(GRPCError) as err:
            await stub.GetProduct(pb.GetProductRequest(id="p-1"), timeout=5)
    finally:
        channel.close()
    assert err.value.status == Status.UNAVAILABLE
    assert impl.calls["GetProduct"] == 3, "one try + num_retries 2"


async def test_non_idempotent_call_fails_fast_and_runs_once(mesh_of) -> None:
    mesh = await mesh_of(1)
    impl = mesh.upstreams[0].impl
    impl.fail["CreateProduct"] = 1
    # CreateProduct is an admin method, called as the demo admin on the internal listener
    # (same routes, timeouts and retry rules as the edge).
    channel, stub = mesh.stub(mesh.internal)
    try:
        t0 = time.monotonic()
        with pytest.raises(GRPCError) as err:
            await stub.CreateProduct(pb.CreateProductRequest(sku="s", name="n"), timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        channel.close()
    assert err.value.status == Status.UNAVAILABLE
    assert impl.calls["CreateProduct"] == 1, "a non-idempotent call must never run twice"
    assert elapsed < 1.0
    assert mesh.stat("cluster.product.upstream_rq_retry") == 0


async def test_killed_instance_idempotent_calls_retry_on_the_other(mesh_of) -> None:
    mesh = await mesh_of(2, doomed=True)
    a, b = mesh.upstreams
    channel, stub = mesh.stub(mesh.edge)
    try:
        for _ in range(4):  # both instances serve and hold pooled connections
            await stub.GetProduct(pb.GetProductRequest(id="p-1"), timeout=5)
        assert b.impl.calls["GetProduct"] == 2, "round robin: the other two went to a"
        await a.kill()
        before = b.impl.calls["GetProduct"]
        for _ in range(6):
            reply = await stub.GetProduct(pb.GetProductRequest(id="p-1"), timeout=5)
            assert reply.product.id == "p-1"
    finally:
        channel.close()
    assert b.impl.calls["GetProduct"] - before == 6
    assert mesh.stat("cluster.product.upstream_rq_retry") >= 1, "some calls hit the dead one"


async def test_killed_instance_non_idempotent_calls_fail_fast_never_twice(mesh_of) -> None:
    mesh = await mesh_of(2, doomed=True)
    a, b = mesh.upstreams
    channel, stub = mesh.stub(mesh.internal)
    req = pb.CreateProductRequest(sku="s", name="n")
    try:
        for _ in range(4):
            await stub.CreateProduct(req, timeout=5)
        assert b.impl.calls["CreateProduct"] == 2, "round robin: the other two went to a"
        await a.kill()
        before = b.impl.calls["CreateProduct"]
        ok = failed = 0
        for _ in range(6):
            t0 = time.monotonic()
            try:
                await stub.CreateProduct(req, timeout=5)
                ok += 1
            except GRPCError as exc:
                assert exc.status == Status.UNAVAILABLE
                assert time.monotonic() - t0 < 1.0, "fail fast, no retry loop"
                failed += 1
    finally:
        channel.close()
    assert failed >= 1, "round robin sent some calls to the killed instance"
    assert b.impl.calls["CreateProduct"] - before == ok, "each success ran exactly once"
    assert mesh.stat("cluster.product.upstream_rq_retry") == 0


async def test_internal_method_only_on_the_internal_listener(mesh_of) -> None:
    mesh = await mesh_of(1)
    impl = mesh.upstreams[0].impl
    req = pb.ReserveStockRequest(order_id="o-1", lines=[pb.StockLine(product_id="p", quantity=1)])
    edge_ch, edge = mesh.stub(mesh.edge)
    int_ch, internal = mesh.stub(mesh.internal)
    bare_ch, bare = mesh.stub(mesh.internal, bare=True)
    try:
        with pytest.raises(GRPCError) as err:
            await edge.ReserveStock(req, timeout=5)
        assert err.value.status == Status.PERMISSION_DENIED
        assert impl.calls["ReserveStock"] == 0
        # On the internal listener too, only the caller the schema names gets through:
        # no token is 401, notification (a real service, not a caller) 403.
        for metadata, status in (
            ({}, Status.UNAUTHENTICATED),
            (service_bearer("notification"), Status.PERMISSION_DENIED),
        ):
            with pytest.raises(GRPCError) as err:
                await bare.ReserveStock(req, metadata=metadata, timeout=5)
            assert err.value.status == status
        assert impl.calls["ReserveStock"] == 0
        await internal.ReserveStock(req, timeout=5)  # as order
        assert impl.calls["ReserveStock"] == 1
    finally:
        edge_ch.close()
        int_ch.close()
        bare_ch.close()


async def test_edge_rate_limit_answers_resource_exhausted_beyond_the_bucket(mesh_of) -> None:
    """The edge's token bucket (the committed one allows 2000/s, burst 4000; here 5/s, burst
    5): calls beyond it are refused by Envoy, never reach the service, and are counted."""
    mesh = await mesh_of(1, rate_limit_rps=5, rate_limit_burst=5)
    impl = mesh.upstreams[0].impl
    channel, stub = mesh.stub(mesh.edge)
    ok = limited = 0
    try:
        for _ in range(20):
            try:
                await stub.GetProduct(pb.GetProductRequest(id="p-1"), timeout=5)
                ok += 1
            except GRPCError as exc:
                assert exc.status == Status.RESOURCE_EXHAUSTED, exc
                limited += 1
    finally:
        channel.close()
    assert ok >= 5 and limited >= 1, (ok, limited)
    assert impl.calls["GetProduct"] == ok, "a refused call never reached the service"
    assert mesh.stat("edge_rate_limit.http_local_rate_limit.rate_limited") == limited
