"""The pieces bench/notification_bench.py runs: a private SMTP sink, the notification service
of the working tree or of a base git revision (a worktree), a stand-in user service, private
topics, the bench's events, the mail directory as a clock, and CPU seconds by part.

Everything here is loopback only and bounded; processes it starts are stopped by the caller
(`stop`), topics it creates are deleted by `TopicSet.delete`.
"""

from __future__ import annotations

import asyncio
import email.policy
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import CLK_TCK, ROOT, BenchFailed, free_port, wait_port
from services.runtime.kafka import EventProducer
from shop.events import v1 as events

BOOTSTRAP = os.environ.get("NOTIFICATION_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REGISTRY = os.environ.get("NOTIFICATION_REGISTRY_URL", "http://127.0.0.1:8085")
PARTITIONS = 3


# ---------------------------------------------------------------- code under test


def base_tree(rev: str) -> Path:
    """A detached worktree of `rev` under /tmp (created once, reused)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    path = Path("/tmp") / f"shopmesh-bench-{sha[:12]}"
    if not (path / "services").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return path


@dataclass(frozen=True)
class Code:
    """Where a side's code comes from: the working tree, or a base revision's worktree."""

    name: str  # "new" or "base"
    tree: Path

    def env(self) -> dict[str, str]:
        if self.tree == ROOT:
            return dict(os.environ)
        # The worktree's packages first; generated code and dependencies as installed.
        return {**os.environ, "PYTHONPATH": str(self.tree)}


def spawn(code: Code, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 (closed with the process by the OS)
    return subprocess.Popen(
        [sys.executable, *args], cwd=code.tree, env=env, stdout=out, stderr=out,
        start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- processes


@dataclass
class Sink:
    """A private SMTP sink of one side's code; its mail dir is the delivery clock."""

    code: Code
    tmp: Path
    smtp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def mail(self) -> Path:
        # tmpfs when there is one: on this VM's ext4 a file create + rename costs the sink
        # 0.3-0.6 ms of kernel time per message (varying with other disk traffic), 15 µs
        # on tmpfs; the sink's own CPU is the same code either way.
        shm = Path("/dev/shm")
        root = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.tmp
        return root / f"shopmesh-bench-mail-{os.getpid()}-{self.code.name}-{self.smtp_port}"

    async def start(self) -> None:
        self.mail.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            self.code,
            ["-m", "stack.smtp_sink", "--smtp-port", str(self.smtp_port),
             "--http-port", str(self.http_port), "--dir", str(self.mail)],
            self.code.env(), self.tmp / f"sink-{self.code.name}.log",
        )  # fmt: skip
        await wait_port(self.smtp_port, 30)

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.mail, ignore_errors=True)


class Mailbox:
    """Messages in a sink's mail dir: arrival time (ns, from the file name) by event id (the
    Message-ID's local part). Each file is read once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: set[str] = set()
        self.by_event: dict[str, list[int]] = {}
        self._parser = BytesHeaderParser(policy=email.policy.compat32)

    def count(self) -> int:
        """Files stored so far (cheap: names only)."""
        return sum(1 for name in os.listdir(self.directory) if name.endswith(".eml"))

    def read(self) -> dict[str, list[int]]:
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".eml") or entry.name in self.seen:
                continue
            self.seen.add(entry.name)
            with open(entry.path, "rb") as f:
                head = self._parser.parse(f)
            event_id = str(head["Message-ID"] or "").strip("<>").split("@", 1)[0]
            self.by_event.setdefault(event_id, []).append(int(entry.name.split("-", 1)[0]))
        return self.by_event


def serve_stand_in_users(port: int) -> None:
    """`python -m bench.notification_rig users PORT`: GetUser and BatchGetUsers for any id (a
    made-up user whose address is `<id>@bench.test`), in its own process so its CPU is
    counted apart."""
    from grpclib.server import Server

    from bench.common import run_main
    from mesh.stubs import Stub
    from shop.user.v1 import user_pb2

    def user(user_id: str) -> user_pb2.User:
        return user_pb2.User(id=user_id, email=f"{user_id}@bench.test", display_name="Bench")

    def get_user(req: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        return user_pb2.GetUserResponse(user=user(req.id))

    def batch_get_users(req: user_pb2.BatchGetUsersRequest) -> user_pb2.BatchGetUsersResponse:
        return user_pb2.BatchGetUsersResponse(users=[user(i) for i in dict.fromkeys(req.ids)])

    # A stub from the service descriptor (mesh/stubs.py): the other methods UNIMPLEMENTED.
    users = Stub(
        user_pb2.DESCRIPTOR.services_by_name["UserService"],
        {"GetUser": get_user, "BatchGetUsers": batch_get_users},
    )

    async def main() -> None:
        server = Server([users])
        await server.start("127.0.0.1", port)
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()
        server.close()
        await server.wait_closed()

    run_main(main())


@dataclass
class Service:
    """The notification service of one side, consuming one topic set."""

    code: Code
    tmp: Path
    topics: TopicSet
    smtp_port: int
    user_addr: str
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **self.code.env(),
            "NOTIFICATION_TOPICS": self.topics.orders,
            "NOTIFICATION_GROUP_ID": f"{self.topics.prefix}.svc",
            "NOTIFICATION_SMTP_PORT": str(self.smtp_port),
            "NOTIFICATION_USER_ADDR": self.user_addr,
            "NOTIFICATION_GRPC_PORT": "0",
            "NOTIFICATION_METRICS_PORT": "0",
            # As deployed: INFO logs (one line per email) and every span exported, to files.
            "NOTIFICATION_LOG_LEVEL": "INFO",
            # One process per side unless asked (--workers), whatever the runtime's default.
            "NOTIFICATION_WORKERS": "1",
            "SHOPMESH_TRACE_DIR": str(self.tmp / "traces"),
            **self.extra_env,
        }
        log = self.tmp / f"service-{self.code.name}.log"
        self.proc = spawn(self.code, ["-m", "services.notification.main"], env, log)

    def stop(self) -> None:
        stop(self.proc)

    def log_tail(self) -> str:
        path = self.tmp / f"service-{self.code.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# ---------------------------------------------------------------- topics and events


@dataclass
class TopicSet:
    """A private event topic with its retry and dead-letter topics."""

    prefix: str = field(default_factory=lambda: f"bench.notif.{uuid.uuid4().hex[:8]}")

    @property
    def orders(self) -> str:
        return f"{self.prefix}.orders"

    @property
    def names(self) -> list[str]:
        return [self.orders, *(f"{self.orders}.{s}" for s in ("retry.1", "retry.2", "dlq"))]

    def create(self) -> TopicSet:
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in self.names]).values():
            fut.result(timeout=30)
        return self

    async def delete(self) -> None:
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for fut in admin.delete_topics(self.names).values():
            fut.exception(timeout=30)
        async with httpx.AsyncClient(base_url=REGISTRY, timeout=5) as http:
            for subject in (await http.get("/subjects")).json():
                if subject.startswith(self.prefix):
                    await http.delete(f"/subjects/{subject}")
                    await http.delete(f"/subjects/{subject}", params={"permanent": "true"})


def order_placed(n: int, user: str) -> events.OrderPlaced:
    price = events.Money(currency_code="USD", units=10 + n % 90, nanos=500_000_000)
    return events.OrderPlaced(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        order_id=f"bo-{uuid.uuid4().hex[:12]}",
        user_id=user,
        lines=[events.OrderLine("p", "Bench item", 1 + n % 3, price)],
        total=price,
        shipping_city="Oslo",
    )


async def produce(
    producer: EventProducer, topic: str, records: Iterable[events.OrderPlaced]
) -> dict[str, int]:
    """Send every record (keyed by order, like the relay); event id -> produce time (ns)."""
    acks, sent = [], {}
    for rec in records:
        sent[str(rec.event_id)] = time.time_ns()
        acks.append(await producer.send(topic, rec, key=rec.order_id, event_id=str(rec.event_id)))
    await asyncio.gather(*acks)
    return sent


# ---------------------------------------------------------------- CPU by part


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_ticks(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _ppid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class PartCpu:
    """CPU seconds by part between two snapshots: the named processes with their children
    (a service's worker processes), the Kafka broker, and PostgreSQL backends of the `notification`
    database (any client's: the stack's own notification service idles meanwhile). Kafka and
    PostgreSQL are shared with whatever else runs on the machine."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        ticks: dict[str, int] = {name: _cpu_ticks(str(pid)) for name, pid in self.pids.items()}
        ticks["kafka"] = ticks["postgres"] = 0
        part_of = {pid: name for name, pid in self.pids.items()}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            if (name := part_of.get(_ppid(pid))) is not None:
                ticks[name] += _cpu_ticks(pid)  # a worker of a named process
                continue
            cmd = _cmdline(pid)
            if " kafka.Kafka " in cmd:
                ticks["kafka"] += _cpu_ticks(pid)
            elif cmd.startswith("postgres: ") and cmd.split()[2:3] == ["notification"]:
                ticks["postgres"] += _cpu_ticks(pid)
        ticks["bench process"] = int(time.process_time() * CLK_TCK)
        return {name: t / CLK_TCK for name, t in ticks.items()}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}


# The stack's processes by a piece of their command line (as ../shared/tools/cpu_by_part.py).
STACK_PARTS = {
    "notification": "services.notification.main", "smtp sink": "stack.smtp_sink",
    "user": "services.user.main", "order": "services.order.main",
    "product": "services.product.main", "kafka": " kafka.Kafka ", "ferretdb": "ferretdb",
    "envoy": "envoy",
}  # fmt: skip


def stack_cpu() -> dict[str, float]:
    """CPU seconds so far of every stack process by part; PostgreSQL backends by database
    ("postgres:<db>", both servers)."""
    ticks: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        cmd = _cmdline(pid)
        if cmd.startswith("postgres: ") and len(cmd.split()) > 3:
            name = f"postgres:{cmd.split()[2]}"
        else:
            name = next((n for n, key in STACK_PARTS.items() if key in cmd), "")
        if name:
            ticks[name] = ticks.get(name, 0) + _cpu_ticks(pid)
    return {name: t / CLK_TCK for name, t in ticks.items()}


async def wait_until(check, within: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise BenchFailed(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(every)


if __name__ == "__main__" and sys.argv[1:2] == ["users"]:
    serve_stand_in_users(int(sys.argv[2]))
