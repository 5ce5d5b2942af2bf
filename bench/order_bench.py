"""Order service throughput: PlaceOrder and GetOrder over gRPC (loopback, direct), and the
outbox relay's events/s against raw producers, all in one run. Writes bench/results/order.json.
The relay leg is bench/order_relay_bench.py; the seeded orders, bench/order_fixtures.py.

- rpc: an order server in this process (port 0, its own scratch database, relay and sweeper
  off) talking to the stack's product and user services. PlaceOrder (user check, reserve,
  an insert, a version claim and an update) is reported beside GetOrder (one indexed
  read), the baseline.
  Then, same run and same shopper JWT, PlaceOrder on the stack's order service (port:
  schemas/topology.yaml)
  direct, and through the gateway as the storefront calls it: gRPC-Web to NGINX
  (127.0.0.1:8080) -> Envoy (jwt_authn, RBAC) -> that service; each worker has its own
  loopback source address, so NGINX's per-IP limit applies per shopper. The gateway leg is
  reported as a ratio to both direct figures. The stack's service is the like-for-like one:
  unlike the in-process server it logs and traces every call, runs its relay (publishing
  these orders' events meanwhile) and sweeper, and its database holds every earlier order.
- relay: N confirmed orders seeded in a scratch database, drained by a fresh OutboxRelay
  (from the store: a restart) to a scratch topic (subjects auto-registered, deleted
  afterwards), beside the same records sent by EventProducer alone (aiokafka) and by
  confluent-kafka's Producer: the gap is what the outbox's read, check and delete cost per
  event.

    python bench/order_bench.py [--seconds 5] [--concurrency 8] [--events 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from grpclib.client import Channel  # noqa: E402

from bench.common import BenchFailed, check_loopback, median_range, write_result  # noqa: E402
from bench.order_fixtures import MONGO, seed_confirmed  # noqa: E402
from bench.order_relay_bench import bench_relay  # noqa: E402
from mesh.testing import GRPC_WEB_HEADERS, grpc_web_parse, grpc_web_request  # noqa: E402
from services.order.clients import GrpcCatalog, GrpcUsers  # noqa: E402
from services.order.handlers import OrderHandlers  # noqa: E402
from services.order.repository import MongoOrders  # noqa: E402
from services.order.service import OrderService  # noqa: E402
from services.runtime.auth import RuntimeAuth  # noqa: E402
from services.runtime.server import App, ServerConfig  # noqa: E402
from shop.auth.v1 import auth_pb2  # noqa: E402
from shop.auth.v1.auth_grpc import AuthServiceStub  # noqa: E402
from shop.common.v1 import common_pb2  # noqa: E402
from shop.order.v1 import order_pb2 as pb  # noqa: E402
from shop.order.v1.order_grpc import OrderServiceStub  # noqa: E402
from shop.product.v1 import product_pb2  # noqa: E402
from shop.product.v1.product_grpc import ProductServiceStub  # noqa: E402
from shop.topology import SERVICES  # noqa: E402
from shop.user.v1 import user_pb2  # noqa: E402
from shop.user.v1.user_grpc import UserServiceStub  # noqa: E402
from stack.callers import as_platform  # noqa: E402

GATEWAY = os.environ.get("SHOPMESH_GATEWAY", "http://127.0.0.1:8080")
STACK_ORDER = ("127.0.0.1", SERVICES["order"].port)  # the stack's order service, behind Envoy
PLACE_ORDER_WEB = "/api/shop.order.v1.OrderService/PlaceOrder"
MAX_CALLS = 20_000  # per scenario, bounds the run on a fast machine


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


async def loops(call, seconds: float, concurrency: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lat: list[float] = []
    errors = 0
    first_error = ""
    end = time.perf_counter() + seconds

    async def one(worker: int) -> None:
        nonlocal errors, first_error
        i = 0
        while time.perf_counter() < end and len(lat) + errors < MAX_CALLS:
            t = time.perf_counter()
            try:
                await call(worker, i)
                lat.append(time.perf_counter() - t)
            except Exception as exc:
                errors += 1
                first_error = first_error or repr(exc)[:300]
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(concurrency)))
    wall = time.perf_counter() - start
    if errors:  # a speed measured over failures means nothing: fail loudly
        raise BenchFailed(f"{errors} of {errors + len(lat)} calls failed; first: {first_error}")
    return {
        "calls": len(lat),
        "errors": errors,
        "per_s": round(len(lat) / wall, 1),
        "p50_ms": round(pct(lat, 0.5) * 1000, 2),
        "p99_ms": round(pct(lat, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0,
    }


async def bench_rpc(seconds: float, concurrency: int, rounds: int) -> dict[str, object]:
    db = f"order_bench_{uuid.uuid4().hex[:8]}"
    repo = MongoOrders(MONGO, db)
    catalog, users = GrpcCatalog("127.0.0.1", 50051), GrpcUsers("127.0.0.1", 50052)
    service = OrderService(repo, users, catalog)
    # The runtime's token check, as `serve` gives every service (JWKS from the auth service).
    auth = RuntimeAuth.from_env("order")
    app = App(
        ServerConfig(name="order-bench"),
        [OrderHandlers(service)],
        [repo, catalog, users, auth],
        log_calls=False,
        auth=auth,
    )
    await app.start()
    # Product and user setup as the platform (the demo admin, stack/callers.py);
    # GetOrder and PlaceOrder as the shopper who owns the orders, with their access token.
    channel = Channel("127.0.0.1", app.grpc_port)
    stub = OrderServiceStub(channel)
    pch = as_platform(Channel("127.0.0.1", SERVICES["product"].port))
    uch = as_platform(Channel("127.0.0.1", SERVICES["user"].port))
    ach = Channel("127.0.0.1", SERVICES["auth"].port)
    out: dict[str, object] = {}
    try:
        tag = uuid.uuid4().hex[:8]
        email, password = f"bench-{tag}@example.com", "bench-password-1"
        try:
            user = (
                await UserServiceStub(uch).RegisterUser(
                    user_pb2.RegisterUserRequest(
                        email=email, password=password, display_name="Bench"
                    )
                )
            ).user
            login = await AuthServiceStub(ach).Login(
                auth_pb2.LoginRequest(email=email, password=password)
            )
            product = (
                await ProductServiceStub(pch).CreateProduct(
                    product_pb2.CreateProductRequest(
                        sku=f"BENCH-{tag}",
                        name="Bench thing",
                        category="bench",
                        price=common_pb2.Money(currency_code="USD", units=3),
                        stock=1_000_000,
                    )
                )
            ).product
        except Exception as exc:  # product/user/auth not running: fail, do not fake
            raise BenchFailed(f"product/user/auth unavailable: {exc!r}"[:300]) from exc
        md = {"authorization": f"Bearer {login.tokens.access_token}"}
        ids = await seed_confirmed(repo, 200, user.id)
        out["get_order"] = await loops(
            lambda w, i: stub.GetOrder(
                pb.GetOrderRequest(id=ids[(w * 31 + i) % len(ids)]), metadata=md
            ),
            seconds,
            concurrency,
        )
        address = common_pb2.Address(
            recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001",
            country_code="FR",
        )  # fmt: skip

        def place(w: int, i: int):  # type: ignore[no-untyped-def]
            return stub.PlaceOrder(
                pb.PlaceOrderRequest(
                    idempotency_key=f"bench-{tag}-{w}-{i}",
                    user_id=user.id,
                    lines=[pb.LineItem(product_id=product.id, quantity=1)],
                    shipping_address=address,
                ),
                metadata=md,
            )

        out["place_order"] = await loops(place, seconds, concurrency)
        out |= await bench_place_via_stack(
            md, user.id, product.id, address, tag, seconds, concurrency, rounds
        )
        direct = out["place_order"]["per_s"]  # type: ignore[index]
        gateway = out["place_order_gateway"]["per_s"]["median"]
        out["place_order_gateway_ratio_vs_direct"] = round(gateway / direct, 3)
    finally:
        for c in (channel, pch, uch, ach):
            c.close()
        assert repo.client is not None
        await repo.client.drop_database(db)
        await app.stop(0)
    return out


async def bench_place_via_stack(
    md: dict[str, str],
    user_id: str,
    product_id: str,
    address: common_pb2.Address,
    tag: str,
    seconds: float,
    concurrency: int,
    rounds: int,
) -> dict[str, object]:
    """PlaceOrder on the stack's order service: gRPC direct and gRPC-Web via NGINX and
    Envoy, with the same shopper's JWT, alternating for `rounds` rounds so drift on the
    shared machine hits both alike; median (min-max) over rounds. Any failed call fails
    the run (see `loops`)."""
    check_loopback(GATEWAY.split("//", 1)[1].split(":", 1)[0])

    def request() -> pb.PlaceOrderRequest:
        return pb.PlaceOrderRequest(
            idempotency_key=f"bench-{tag}-{uuid.uuid4().hex}",  # a new order every call
            user_id=user_id,
            lines=[pb.LineItem(product_id=product_id, quantity=1)],
            shipping_address=address,
        )

    channel = Channel(*STACK_ORDER)
    stub = OrderServiceStub(channel)
    headers = {**GRPC_WEB_HEADERS, **md}
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, local_addr=(f"127.0.0.{10 + w}", 0)),
            timeout=aiohttp.ClientTimeout(total=15),
        )
        for w in range(concurrency)
    ]

    async def via_gateway(w: int, i: int) -> None:
        body = grpc_web_request(request().SerializeToString())
        async with sessions[w].post(GATEWAY + PLACE_ORDER_WEB, data=body, headers=headers) as rep:
            data = await rep.read()
            if rep.status != 200:
                raise BenchFailed(f"gRPC-Web HTTP {rep.status}: {data[:200]!r}")
            messages, trailers = grpc_web_parse(data, dict(rep.headers))
        if trailers.get("grpc-status") != "0":
            raise BenchFailed(f"gRPC-Web {trailers}")
        order = pb.PlaceOrderResponse.FromString(messages[0]).order
        if order.status != pb.ORDER_STATUS_CONFIRMED:
            raise BenchFailed(f"order {order.id} is {pb.OrderStatus.Name(order.status)}")

    legs: dict[str, list[dict[str, float]]] = {"stack_direct": [], "gateway": []}
    try:
        await via_gateway(0, 0)  # correctness (and the JWT through Envoy) before load
        for _ in range(rounds):
            legs["stack_direct"].append(
                await loops(
                    lambda w, i: stub.PlaceOrder(request(), metadata=md, timeout=10),
                    seconds,
                    concurrency,
                )
            )
            legs["gateway"].append(await loops(via_gateway, seconds, concurrency))
    finally:
        channel.close()
        for session in sessions:
            await session.close()

    def summary(points: list[dict[str, float]]) -> dict[str, object]:
        return {
            "calls": sum(int(p["calls"]) for p in points),
            "errors": 0,
            **{k: median_range((p[k] for p in points), 2) for k in ("per_s", "p50_ms", "p99_ms")},
        }

    ratios = [
        g["per_s"] / d["per_s"] for d, g in zip(legs["stack_direct"], legs["gateway"], strict=True)
    ]
    return {
        "place_order_stack_direct": summary(legs["stack_direct"]),
        "place_order_gateway": summary(legs["gateway"]),
        "place_order_gateway_ratio_vs_stack_direct": median_range(ratios),
        "place_order_rounds": rounds,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway rounds")
    args = ap.parse_args()
    result = {
        "bench": "order",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "params": vars(args),
        "note": "FerretDB v1.24.2 on PostgreSQL; a new order is one insert, then a version "
        "claim (the outbox entry) and an update, see services/order/repository/store.py",
        "rpc": await bench_rpc(args.seconds, args.concurrency, args.rounds),
        "relay": await bench_relay(args.events),
    }
    write_result("order", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
