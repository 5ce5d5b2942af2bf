"""order_to_email for bench/notification_bench.py: real orders through the stack as deployed,
PlaceOrder reply -> the confirmation email in the stack's SMTP sink, and what the parts of
the stack spent per order meanwhile."""

from __future__ import annotations

import asyncio
import email.policy
import statistics
import time
import uuid
from email.parser import BytesHeaderParser

from aiokafka import AIOKafkaConsumer, TopicPartition
from grpclib.client import Channel

from bench.common import percentile
from bench.notification_rig import BOOTSTRAP, stack_cpu
from shop.auth.v1 import auth_pb2
from shop.auth.v1.auth_grpc import AuthServiceStub
from shop.common.v1 import common_pb2
from shop.order.v1 import order_pb2
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.topology import SERVICES, TOPICS
from shop.user.v1 import user_pb2
from shop.user.v1.user_grpc import UserServiceStub
from stack.callers import as_platform
from stack.model import state_dir

MAX_ORDERS = 500  # places real orders in the stack's store: keep it bounded
ORDER, PRODUCT, USER, AUTH = (SERVICES[n].port for n in ("order", "product", "user", "auth"))


def _stack_mail_subjects(since_ns: int, seen: dict[str, tuple[str, int]]) -> None:
    """Add the stack sink's new files (name -> (subject, arrival ns)) to `seen`."""
    for path in (state_dir() / "mail").glob("*.eml"):
        if path.name in seen or int(path.name.split("-", 1)[0]) < since_ns:
            continue
        with open(path, "rb") as f:
            msg = BytesHeaderParser(policy=email.policy.default).parse(f)
        seen[path.name] = (str(msg["Subject"] or ""), int(path.name.split("-", 1)[0]))


def _partitions(topic: str) -> int:
    return next(t.partitions for t in TOPICS if t.name == topic)


async def order_to_email(orders: int, rate: float) -> dict:
    """Real orders through the deployed stack; PlaceOrder reply -> confirmation email."""
    orders = min(orders, MAX_ORDERS)
    tag = uuid.uuid4().hex[:8]
    svc = [as_platform(Channel("127.0.0.1", p)) for p in (PRODUCT, USER)]
    shop = Channel("127.0.0.1", ORDER)
    auth = Channel("127.0.0.1", AUTH)
    try:
        address, password = f"bench-o2e-{tag}@example.com", "bench-password-1"
        user = (
            await UserServiceStub(svc[1]).RegisterUser(
                user_pb2.RegisterUserRequest(email=address, password=password, display_name="B")
            )
        ).user
        login = await AuthServiceStub(auth).Login(
            auth_pb2.LoginRequest(email=address, password=password)
        )
        product = (
            await ProductServiceStub(svc[0]).CreateProduct(
                product_pb2.CreateProductRequest(
                    sku=f"BENCH-O2E-{tag}", name="Bench mug", category="bench",
                    price=common_pb2.Money(currency_code="USD", units=9, nanos=500_000_000),
                    stock=orders + 10,
                )
            )
        ).product  # fmt: skip
        md = {"authorization": f"Bearer {login.tokens.access_token}"}
        stub = OrderServiceStub(shop)
        ship_to = common_pb2.Address(
            recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001",
            country_code="FR",
        )  # fmt: skip
        # A tail of shop.orders.v1 from its current end: when each OrderPlaced is readable.
        tail = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
        await tail.start()
        tps = [TopicPartition("shop.orders.v1", p) for p in range(_partitions("shop.orders.v1"))]
        tail.assign(tps)
        await tail.seek_to_end(*tps)
        for tp in tps:
            await tail.position(tp)
        on_topic: dict[str, int] = {}
        stop_tail = asyncio.Event()

        async def read_tail() -> None:
            while not stop_tail.is_set():
                for records in (await tail.getmany(timeout_ms=100)).values():
                    for r in records:
                        if r.key is not None:
                            on_topic.setdefault(r.key.decode(), time.time_ns())

        tail_task = asyncio.create_task(read_tail())
        since_ns = time.time_ns()
        # What each part spends idle (health checks, polls, others' traffic), subtracted below.
        idle_before, idle_t0 = stack_cpu(), time.monotonic()
        await asyncio.sleep(3)
        cpu_before, t_start = stack_cpu(), time.monotonic()
        idle_rate = {
            k: (v - idle_before.get(k, 0.0)) / (t_start - idle_t0) for k, v in cpu_before.items()
        }
        replied: dict[str, int] = {}

        async def place(i: int) -> None:
            reply = await stub.PlaceOrder(
                order_pb2.PlaceOrderRequest(
                    idempotency_key=f"o2e-{tag}-{i}", user_id=user.id,
                    lines=[order_pb2.LineItem(product_id=product.id, quantity=1)],
                    shipping_address=ship_to,
                ),
                metadata=md,
            )  # fmt: skip
            replied[reply.order.id] = time.time_ns()

        t0 = time.perf_counter()
        calls = []
        for i in range(orders):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(asyncio.create_task(place(i)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:  # a latency over failed orders means nothing
            raise RuntimeError(f"{len(errors)} of {orders} PlaceOrder calls failed: {errors[0]!r}")
        mail: dict[str, tuple[str, int]] = {}
        arrived: dict[str, int] = {}
        deadline = time.monotonic() + 120
        while len(arrived) < orders and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            _stack_mail_subjects(since_ns, mail)
            for subject, at in mail.values():
                words = subject.split()
                if words[:1] == ["Order"] and words[2:3] == ["confirmed"] and words[1] in replied:
                    arrived.setdefault(words[1], at)
        window_s = time.monotonic() - t_start
        cpu_used = {
            k: max(0.0, v - cpu_before.get(k, 0.0) - idle_rate.get(k, 0.0) * window_s)
            for k, v in stack_cpu().items()
        }
        stop_tail.set()
        await tail_task
        await tail.stop()
    finally:
        for c in (*svc, shop, auth):
            c.close()
    email_ms = [(arrived[o] - t) / 1e6 for o, t in replied.items() if o in arrived]
    topic_ms = [(on_topic[o] - t) / 1e6 for o, t in replied.items() if o in on_topic]
    # The notification side alone: OrderPlaced readable on the topic -> email in the sink.
    consumer_ms = sorted(
        (arrived[o] - on_topic[o]) / 1e6 for o in replied if o in on_topic and o in arrived
    )
    if len(email_ms) < orders:
        raise RuntimeError(f"only {len(email_ms)} of {orders} confirmation emails arrived")
    return {
        "order_to_email": {
            "rate_per_s": rate,
            "orders": orders,
            "delivered": len(email_ms),
            "p50_ms": round(statistics.median(email_ms), 2),
            "p99_ms": round(percentile(sorted(email_ms), 99), 2),
            "max_ms": round(max(email_ms), 2),
        },
        "order_to_email_split_place_to_topic": {
            "orders": len(topic_ms),
            "p50_ms": round(statistics.median(topic_ms), 2) if topic_ms else None,
            "p99_ms": round(percentile(sorted(topic_ms), 99), 2) if topic_ms else None,
        },
        "order_to_email_split_topic_to_email": {
            "orders": len(consumer_ms),
            "p50_ms": round(statistics.median(consumer_ms), 2) if consumer_ms else None,
            "p99_ms": round(percentile(consumer_ms, 99), 2) if consumer_ms else None,
        },
        # From the first PlaceOrder to the last email, less each part's rate in the 3 s
        # before; what else the machine ran meanwhile beyond that rate is in here too.
        "order_to_email_cpu_ms_per_order": {
            k: round(v / orders * 1000, 2)
            for k, v in sorted(cpu_used.items(), key=lambda kv: -kv[1])
            if v / orders * 1000 >= 0.05
        },
    }
