"""Notification throughput and order -> email latency, against the real service process.

Runs on loopback only, bounded in events and time:
- a private SMTP sink (own ports, temp mail dir) so thousands of bench emails never reach
  the shared sink; its file names carry the arrival time (ns), which is when we call an
  email delivered;
- private topics (3 partitions) and consumer groups on the stack's Kafka and registry, the
  notification log in the stack's PostgreSQL;
- `python -m services.notification.main` as a subprocess, configured for those topics;
- GetUser from a stand-in GetUser server in this process (the bench measures notification,
  not the user service; its users are made up, and the recipient's local part is the
  user id, which is how an email is matched to its event).

Scenarios (each with a same-run baseline):
1. throughput: N OrderPlaced events produced up front, the service started, emails/s from
   the first to the last email; baseline: the same N records consumed and Avro-decoded by
   a bare consumer (the runtime's EventConsumer), no email, no log, no user lookup.
2. latency: events produced at a fixed rate while the service is caught up; per event,
   produce time -> sink arrival, p50/p99; baseline: produce -> a bare consumer receives it.
3. order_to_email: the whole path as deployed. Real orders placed through the stack's order
   service (PlaceOrder as a registered shopper, with the access token from the auth service)
   at a fixed rate; per order, PlaceOrder reply -> its confirmation email in the stack's
   SMTP sink (outbox relay + Kafka + the stack's notification service + GetUser + SMTP),
   matched by the order number in the subject; p50/p99. Same-run split: PlaceOrder reply ->
   OrderPlaced readable on shop.orders.v1 (a bare tail consumer), i.e. the relay's share.

    python bench/notification_bench.py [--events 1000] [--rate 20] [--seconds 10]
                                       [--orders 100] [--order-rate 5]
Writes bench/results/notification.json.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.server import Server

from bench.common import percentile, write_result
from services.runtime.auth import authenticate_channel
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig
from shop.auth.v1 import auth_pb2
from shop.auth.v1.auth_grpc import AuthServiceStub
from shop.common.v1 import common_pb2
from shop.events import v1 as events
from shop.order.v1 import order_pb2
from shop.order.v1.order_grpc import OrderServiceStub
from shop.product.v1 import product_pb2
from shop.product.v1.product_grpc import ProductServiceStub
from shop.user.v1 import user_grpc, user_pb2
from shop.user.v1.user_grpc import UserServiceStub
from stack.components import smtp_sink
from stack.model import state_dir
from stack.runner import Stack
from stack.topics import TOPICS

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = os.environ.get("NOTIFICATION_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REGISTRY = os.environ.get("NOTIFICATION_REGISTRY_URL", "http://127.0.0.1:8085")
PARTITIONS = 3
MAX_EVENTS = 5000
MAX_ORDERS = 500  # scenario 3 places real orders in the stack's store: keep it bounded
ORDER, PRODUCT, USER, AUTH = 50053, 50051, 50052, 50055


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInUsers(user_grpc.UserServiceBase):
    """GetUser for any id: the bench's made-up users."""

    async def GetUser(self, stream) -> None:
        req = await stream.recv_message()
        await stream.send_message(
            user_pb2.GetUserResponse(
                user=user_pb2.User(id=req.id, email=f"{req.id}@bench.test", display_name="Bench")
            )
        )

    async def _no(self, stream) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    RegisterUser = UpdateProfile = AddAddress = ListAddresses = RemoveAddress = _no
    CheckCredentials = _no


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench.notif.{tag}"
        self.orders, self.users = f"{self.prefix}.orders", f"{self.prefix}.users"
        self.topics = [
            n
            for b in (self.orders, self.users)
            for n in (b, f"{b}.retry.1", f"{b}.retry.2", f"{b}.dlq")
        ]
        self.smtp_port, self.http_port = _free_port(), _free_port()
        self.mail = tmp / "mail"
        self.sink = Stack([smtp_sink(self.smtp_port, self.http_port, self.mail)], tmp)
        self.kafka = KafkaConfig(bootstrap_servers=BOOTSTRAP, registry_url=REGISTRY)
        self.user_addr = ""
        self.user_server: Server | None = None
        self.proc: asyncio.subprocess.Process | None = None

    # ------------------------------------------------------------ setup

    async def setup(self) -> None:
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in self.topics])
        for fut in futures.values():
            fut.result(timeout=30)
        self.sink.up()
        port = _free_port()
        self.user_server = Server([StandInUsers()])
        await self.user_server.start("127.0.0.1", port)
        self.user_addr = f"127.0.0.1:{port}"

    async def teardown(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)
        if self.user_server is not None:
            self.user_server.close()
            await self.user_server.wait_closed()
        self.sink.down()
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for fut in admin.delete_topics(self.topics).values():
            fut.exception(timeout=30)
        async with httpx.AsyncClient(base_url=REGISTRY, timeout=5) as http:
            for subject in (await http.get("/subjects")).json():
                if subject.startswith(self.prefix):
                    await http.delete(f"/subjects/{subject}")
                    await http.delete(f"/subjects/{subject}", params={"permanent": "true"})

    async def start_service(self) -> None:
        env = {
            **os.environ,
            "NOTIFICATION_TOPICS": f"{self.orders},{self.users}",
            "NOTIFICATION_GROUP_ID": f"{self.prefix}.svc",
            "NOTIFICATION_SMTP_PORT": str(self.smtp_port),
            "NOTIFICATION_USER_ADDR": self.user_addr,
            "NOTIFICATION_GRPC_PORT": "0",
            "NOTIFICATION_METRICS_PORT": "0",
            "NOTIFICATION_LOG_LEVEL": "WARNING",
        }
        log = open(self.tmp / "service.log", "ab")  # noqa: SIM115, ASYNC230
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.notification.main", env=env, stdout=log, stderr=log
        )

    # ------------------------------------------------------------ helpers

    def arrivals(self) -> dict[str, int]:
        """Email arrival time (ns) by order id (the bench puts it in the recipient's id)."""
        out: dict[str, int] = {}
        for path in self.mail.glob("*.eml"):
            with open(path, "rb") as f:
                head = f.read(400).decode(errors="replace")
            to = head.split("X-Sink-Rcpt-To: ", 1)[1].split("\r\n", 1)[0]
            out[to.split("@", 1)[0]] = int(path.name.split("-", 1)[0])
        return out

    def record(self, n: int) -> events.OrderPlaced:
        price = events.Money(currency_code="USD", units=10 + n % 90, nanos=500_000_000)
        return events.OrderPlaced(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            order_id=f"bo-{n}",
            user_id=f"bu-{self.prefix[-8:]}-{n}",
            lines=[events.OrderLine("p", "Bench item", 1, price)],
            total=price,
        )

    async def produce_burst(self, producer: EventProducer, n: int) -> None:
        acks = []
        for i in range(n):
            rec = self.record(i)
            acks.append(
                await producer.send(self.orders, rec, key=rec.order_id, event_id=str(rec.event_id))
            )
        await asyncio.gather(*acks)

    async def bare_consume(self, n: int, group: str, stamp: dict[str, int] | None = None) -> float:
        """Decode n records with a bare consumer; returns seconds from first to last."""
        consumer = EventConsumer(
            self.kafka, AvroSerde(REGISTRY), [self.orders], group_id=group,
            max_poll_records=500,
        )  # fmt: skip
        await consumer.start()
        seen = 0
        first = last = 0.0
        try:
            deadline = time.monotonic() + 120
            while seen < n and time.monotonic() < deadline:
                for ev in await consumer.getmany(timeout_ms=200, max_records=500):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    seen += 1
                    if stamp is not None:
                        stamp[ev.value["user_id"]] = time.time_ns()
                await consumer.commit()
        finally:
            await consumer.stop()
        return last - first if seen == n else float("nan")

    # ------------------------------------------------------------ scenarios

    async def run(self) -> dict:
        n = min(self.args.events, MAX_EVENTS)
        serde = AvroSerde(REGISTRY, auto_register=True)
        async with EventProducer(self.kafka, serde) as producer:
            await self.produce_burst(producer, n)
            baseline_s = await self.bare_consume(n, f"{self.prefix}.bare1")

            started = time.time_ns()
            await self.start_service()
            deadline = time.monotonic() + 180
            while len(self.arrivals()) < n and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            times = sorted(self.arrivals().values())
            delivered = len(times)
            if delivered < 2:
                tail = (self.tmp / "service.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"no emails from the service; its log ends:\n{tail}")
            span_s = (times[-1] - times[0]) / 1e9 if delivered > 1 else float("nan")
            throughput = {
                "events": n,
                "delivered": delivered,
                "emails_per_s": round((delivered - 1) / span_s, 1),
                "service_start_to_last_email_s": round((times[-1] - started) / 1e9, 2),
            }
            baseline = {"events": n, "records_per_s": round((n - 1) / baseline_s, 1)}

            # Latency at a fixed rate, the service caught up; a bare consumer in its own
            # group reads the same records meanwhile (the baseline).
            rate, seconds = self.args.rate, self.args.seconds
            count = min(int(rate * seconds), MAX_EVENTS)
            sent_at: dict[str, int] = {}
            received: dict[str, int] = {}
            bare = asyncio.create_task(
                self.bare_consume_live(count, f"{self.prefix}.bare2", received)
            )
            await asyncio.sleep(3)  # the bare consumer joins its group (reads from latest)
            base = n
            t0 = time.perf_counter()
            acks = []
            for i in range(count):
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec = self.record(base + i)
                sent_at[rec.user_id] = time.time_ns()
                acks.append(
                    await producer.send(
                        self.orders, rec, key=rec.order_id, event_id=str(rec.event_id)
                    )
                )
            await asyncio.gather(*acks)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                arrived = self.arrivals()
                if all(u in arrived for u in sent_at):
                    break
                await asyncio.sleep(0.5)
            await asyncio.wait_for(bare, 60)
            arrived = self.arrivals()
            email_ms = [(arrived[u] - t) / 1e6 for u, t in sent_at.items() if u in arrived]
            bare_ms = [(received[u] - t) / 1e6 for u, t in sent_at.items() if u in received]
        return {
            "throughput": throughput,
            "throughput_baseline_bare_consume": baseline,
            "latency": {
                "rate_per_s": rate,
                "events": count,
                "delivered": len(email_ms),
                "p50_ms": round(statistics.median(email_ms), 2),
                "p99_ms": round(percentile(sorted(email_ms), 99), 2),
                "max_ms": round(max(email_ms), 2),
            },
            "latency_baseline_bare_consume": {
                "events": len(bare_ms),
                "p50_ms": round(statistics.median(bare_ms), 2),
                "p99_ms": round(percentile(sorted(bare_ms), 99), 2),
            },
        }

    async def bare_consume_live(self, n: int, group: str, stamp: dict[str, int]) -> None:
        consumer = EventConsumer(
            self.kafka, AvroSerde(REGISTRY), [self.orders], group_id=group,
            auto_offset_reset="latest",
        )  # fmt: skip
        await consumer.start()
        try:
            deadline = time.monotonic() + self.args.seconds + 60
            while len(stamp) < n and time.monotonic() < deadline:
                for ev in await consumer.getmany(timeout_ms=100):
                    stamp[ev.value["user_id"]] = time.time_ns()
        finally:
            await consumer.stop()


# ---------------------------------------------------------------- scenario 3


def _stack_mail_subjects(since_ns: int, seen: dict[str, tuple[str, int]]) -> None:
    """Add the stack sink's new files (name -> (subject, arrival ns)) to `seen`."""
    for path in (state_dir() / "mail").glob("*.eml"):
        if path.name in seen or int(path.name.split("-", 1)[0]) < since_ns:
            continue
        with open(path, "rb") as f:
            msg = BytesHeaderParser(policy=email.policy.default).parse(f)
        seen[path.name] = (str(msg["Subject"] or ""), int(path.name.split("-", 1)[0]))


async def order_to_email(orders: int, rate: float) -> dict:
    """Real orders through the deployed stack; PlaceOrder reply -> confirmation email."""
    orders = min(orders, MAX_ORDERS)
    tag = uuid.uuid4().hex[:8]
    svc = [authenticate_channel(Channel("127.0.0.1", p)) for p in (PRODUCT, USER)]
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
        stop_tail.set()
        await tail_task
        await tail.stop()
    finally:
        for c in (*svc, shop, auth):
            c.close()
    email_ms = [(arrived[o] - t) / 1e6 for o, t in replied.items() if o in arrived]
    topic_ms = [(on_topic[o] - t) / 1e6 for o, t in replied.items() if o in on_topic]
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
    }


def _partitions(topic: str) -> int:
    return next(t.partitions for t in TOPICS if t.name == topic)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--order-rate", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notif-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        await bench.setup()
        try:
            results = await bench.run()
        finally:
            await bench.teardown()
    results.update(await order_to_email(args.orders, args.order_rate))
    results["setup"] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # shared 2-core box
        "topics": f"private, {PARTITIONS} partitions; acks=all producer",
        "service": "services.notification.main subprocess (uvloop), 16 emails in flight",
        "smtp": "private SMTP sink on loopback (one .eml file per message)",
        "user_directory": "stand-in GetUser server in the bench process (gRPC, loopback)",
        "email": "claim row + GetUser + Jinja2 text/html + SMTP + mark sent (2 PG commits)",
        "order_to_email": "the stack as deployed: order service (FerretDB, outbox relay), "
        "shop.orders.v1, notification service, user service, shared SMTP sink; "
        "PlaceOrder with a shopper's access token, paced, one line per order",
    }
    write_result("notification", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
