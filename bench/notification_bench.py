"""Notification: emails/s and CPU per event of the batched consumer against the one of a base
revision (same run), the SMTP sink against the base's, and order -> email latency.

Loopback only, bounded in events, orders and time. Scenarios (--only picks some):
- sink: a private sink of each side's code takes M emails over 16 kept-open aiosmtplib
  connections; msgs/s, sink CPU and client CPU per message.
- throughput: per side, N OrderPlaced events produced up front to private topics
  (3 partitions), then that side's notification service (a subprocess: the working tree, or
  the base revision in a worktree under /tmp) drains them into one private sink of the
  working tree (the fast one, for both sides). Emails/s from the first to the last email, and
  CPU per email of the service, the sink, the stand-in user service, the Kafka broker and
  PostgreSQL backends of the notification database, from /proc over the same window.
  Two workloads: every event a different user (each email needs a GetUser), and 10 events
  per user (what a short-lived lookup cache can save). GetUser is served by a stand-in
  process (the bench measures notification, not the user service).
- latency: per side, events produced at --rate for --seconds while the service is caught
  up; produce -> arrival in the sink, p50/p99.
- order_to_email: the stack as deployed (restart its notification service first): real
  orders placed through the order service at --order-rate; PlaceOrder reply -> the email
  in the stack's sink, and reply -> OrderPlaced on shop.orders.v1 (the relay's share), plus
  CPU per order of the notification path's parts over that window.
Rounds alternate the side order; ratios are computed within a round, then median (min-max).

    python -m bench.notification_bench [--base REV] [--rounds 3] [--events 2000]
        [--messages 2000] [--rate 100] [--seconds 5] [--orders 300] [--order-rate 100]
        [--only sink,throughput,latency,order_to_email]
Writes bench/results/notification.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from bench.common import (
    ROOT,
    BenchFailed,
    fmt_range,
    free_port,
    median_range,
    percentile,
    run_main,
    wait_port,
    write_result,
)
from bench.notification_order import order_to_email
from bench.notification_rig import (
    BOOTSTRAP,
    REGISTRY,
    Code,
    Mailbox,
    PartCpu,
    Service,
    Sink,
    TopicSet,
    base_tree,
    order_placed,
    produce,
    spawn,
    stop,
    wait_until,
)
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig

MAX_EVENTS = 5000
EVENTS_PER_USER = 10  # the repeat-users workload


def _sides(base: Code, new: Code, round_: int) -> list[Code]:
    return [base, new] if round_ % 2 == 0 else [new, base]


def _mr(values: list[float], digits: int = 3) -> dict[str, float]:
    return median_range(values, digits)


# ---------------------------------------------------------------- sink


def _sample_email() -> bytes:
    """A notification-sized email (multipart text + HTML, about 3 kB)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = "Shopmesh <no-reply@shopmesh.local>", "Bench <u@bench.test>"
    msg["Subject"], msg["Message-ID"] = "Order bo-1 confirmed - total USD 10.50", "<bench@n>"
    msg.set_content("Hello Bench,\n\nthank you for your order bo-1.\n  1 x Bench item\n" * 6)
    msg.add_alternative("<p>Hello Bench,</p>\n<p>thank you for your order.</p>\n" * 20, "html")
    return msg.as_bytes()


async def sink_round(code: Code, tmp: Path, messages: int, conns: int = 16) -> dict[str, float]:
    sink = Sink(code, tmp)
    await sink.start()
    clients = []
    try:
        for _ in range(conns):
            c = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.smtp_port, start_tls=False)
            await c.connect()
            clients.append(c)
        body = _sample_email()
        todo = list(range(messages))
        cpu = PartCpu({"sink": sink.proc.pid})
        before, t0 = cpu.snapshot(), time.perf_counter()

        async def sender(c: aiosmtplib.SMTP) -> None:
            while todo:
                todo.pop()
                await c.sendmail("no-reply@shopmesh.local", ["u@bench.test"], body)

        await asyncio.gather(*(sender(c) for c in clients))
        seconds = time.perf_counter() - t0
        used = PartCpu.delta(before, cpu.snapshot())
        stored = Mailbox(sink.mail).count()
        if stored != messages:
            raise BenchFailed(f"sink {code.name}: {stored} of {messages} messages stored")
    finally:
        for c in clients:
            c.close()
        sink.stop()
    return {
        "msgs_per_s": round(messages / seconds, 1),
        "sink_us_per_msg": round(used["sink"] / messages * 1e6, 1),
        "client_us_per_msg": round(used["bench process"] / messages * 1e6, 1),
    }


async def sink_ab(base: Code, new: Code, tmp: Path, rounds: int, messages: int) -> dict:
    per: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    for r in range(rounds):
        for code in _sides(base, new, r):
            per[code.name].append(await sink_round(code, tmp, messages))
    out: dict[str, Any] = {
        "what": f"{messages} emails over 16 kept-open aiosmtplib connections into a private "
        "sink; base: aiosmtpd (the base revision's stack/smtp_sink.py)",
    }
    for name, rows in per.items():
        out[name] = {k: _mr([row[k] for row in rows], 1) for k in rows[0]}
    out["ratio_msgs_per_s_new_over_base"] = _mr(
        [n["msgs_per_s"] / b["msgs_per_s"] for n, b in zip(per["new"], per["base"], strict=True)]
    )
    out["ratio_sink_cpu_base_over_new"] = _mr(
        [b["sink_us_per_msg"] / n["sink_us_per_msg"]
         for n, b in zip(per["new"], per["base"], strict=True)]
    )  # fmt: skip
    return out


# ---------------------------------------------------------------- throughput


class Rig:
    """The shared parts of the throughput and latency scenarios: one stand-in user service
    and one sink of the working tree, both private."""

    def __init__(self, tmp: Path, new: Code) -> None:
        self.tmp = tmp
        self.sink = Sink(new, tmp)
        self.users_port = free_port()
        self.users: subprocess.Popen | None = None
        self.kafka = KafkaConfig(bootstrap_servers=BOOTSTRAP, registry_url=REGISTRY)

    async def __aenter__(self) -> Rig:
        await self.sink.start()
        self.users = spawn(
            Code("new", ROOT), ["-m", "bench.notification_rig", "users", str(self.users_port)],
            dict(os.environ), self.tmp / "users.log",
        )  # fmt: skip
        await wait_port(self.users_port, 30)
        self.mailbox = Mailbox(self.sink.mail)
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.users)
        self.sink.stop()

    def service(self, code: Code, topics: TopicSet) -> Service:
        return Service(code, self.tmp, topics, self.sink.smtp_port, f"127.0.0.1:{self.users_port}")

    def delivered(self, event_ids: set[str]) -> dict[str, list[int]]:
        return {e: t for e, t in self.mailbox.read().items() if e in event_ids}


async def throughput_round(
    rig: Rig, producer: EventProducer, code: Code, events: int, user_of: Callable[[int], str]
) -> dict[str, Any]:
    topics = TopicSet().create()
    service = rig.service(code, topics)
    try:
        records = [order_placed(i, f"bu-{topics.prefix[-8:]}-{user_of(i)}") for i in range(events)]
        ids = set(await produce(producer, topics.orders, records))
        start_count = rig.mailbox.count()
        service.start()
        assert service.proc is not None
        cpu = PartCpu({"notification": service.proc.pid, "smtp sink": rig.sink.proc.pid,
                       "stand-in user service": rig.users.pid})  # fmt: skip
        new = lambda: rig.mailbox.count() - start_count  # noqa: E731
        await wait_until(lambda: new() >= 1, 90, f"{code.name}: first email", every=0.01)
        first_count, before = new(), cpu.snapshot()
        await wait_until(lambda: new() >= events, 60 + events / 20, f"{code.name}: all emails")
        used = PartCpu.delta(before, cpu.snapshot())
        counted = new() - first_count
        got = rig.delivered(ids)
    except BenchFailed as exc:
        raise BenchFailed(f"{exc}; service log ends:\n{service.log_tail()}") from None
    finally:
        service.stop()
        await topics.delete()
    if set(got) != ids:
        raise BenchFailed(f"{code.name}: {len(ids - set(got))} of {events} emails missing")
    times = sorted(t for ts in got.values() for t in ts)
    span_s = (times[-1] - times[0]) / 1e9
    return {
        "emails_per_s": round((len(times) - 1) / span_s, 1),
        "duplicates": len(times) - len(ids),
        "cpu_us_per_email": {k: round(v / counted * 1e6, 1) for k, v in used.items()},
        "cpu_window_emails": counted,
    }


async def throughput_ab(rig: Rig, base: Code, new: Code, rounds: int, events: int) -> dict:
    workloads: dict[str, Callable[[int], str]] = {
        "distinct_users": lambda i: str(i),
        "repeat_users": lambda i: str(i % max(1, events // EVENTS_PER_USER)),
    }
    out: dict[str, Any] = {}
    serde = AvroSerde(REGISTRY, auto_register=True)
    async with EventProducer(rig.kafka, serde) as producer:
        for workload, user_of in workloads.items():
            per: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
            for r in range(rounds):
                for code in _sides(base, new, r):
                    row = await throughput_round(rig, producer, code, events, user_of)
                    print(f"  throughput {workload} {code.name}: {row}", flush=True)
                    per[code.name].append(row)
            entry: dict[str, Any] = {}
            for name, rows in per.items():
                parts = rows[0]["cpu_us_per_email"].keys()
                entry[name] = {
                    "emails_per_s": _mr([row["emails_per_s"] for row in rows], 1),
                    "duplicates": sum(row["duplicates"] for row in rows),
                    "cpu_us_per_email": {
                        p: _mr([row["cpu_us_per_email"][p] for row in rows], 1) for p in parts
                    },
                }
            pairs = list(zip(per["new"], per["base"], strict=True))
            entry["ratio_emails_per_s_new_over_base"] = _mr(
                [n["emails_per_s"] / b["emails_per_s"] for n, b in pairs]
            )
            entry["ratio_service_cpu_base_over_new"] = _mr(
                [b["cpu_us_per_email"]["notification"] / n["cpu_us_per_email"]["notification"]
                 for n, b in pairs]
            )  # fmt: skip
            out[workload] = entry
    out["events_per_run"] = events
    out["workloads"] = {
        "distinct_users": "every event a different user: each email needs a GetUser",
        "repeat_users": f"{EVENTS_PER_USER} events per user, spread over the run",
    }
    return out


async def bare_consume(rig: Rig, events: int) -> dict[str, Any]:
    """The ceiling: the same records consumed and Avro-decoded, nothing else."""
    topics = TopicSet().create()
    try:
        serde = AvroSerde(REGISTRY, auto_register=True)
        async with EventProducer(rig.kafka, serde) as producer:
            records = [order_placed(i, f"bu-{i}") for i in range(events)]
            await produce(producer, topics.orders, records)
        consumer = EventConsumer(
            rig.kafka, AvroSerde(REGISTRY), [topics.orders], group_id=f"{topics.prefix}.bare",
            max_poll_records=500,
        )  # fmt: skip
        await consumer.start()
        seen, first, last = 0, 0.0, 0.0
        try:
            deadline = time.monotonic() + 120
            while seen < events and time.monotonic() < deadline:
                for _ in await consumer.getmany(timeout_ms=200, max_records=500):
                    last = time.perf_counter()
                    first = first or last
                    seen += 1
        finally:
            await consumer.stop()
    finally:
        await topics.delete()
    if seen < events:
        raise BenchFailed(f"bare consumer read {seen} of {events}")
    return {"events": events, "records_per_s": round((events - 1) / (last - first), 1)}


# ---------------------------------------------------------------- latency


async def latency_round(
    rig: Rig, producer: EventProducer, code: Code, rate: float, seconds: float
) -> dict[str, Any]:
    topics = TopicSet().create()
    service = rig.service(code, topics)
    try:
        service.start()
        warm = set(await produce(producer, topics.orders, [order_placed(i, "w") for i in range(3)]))
        await wait_until(lambda: len(rig.delivered(warm)) == len(warm), 90, "warm-up emails", 0.1)
        count = int(rate * seconds)
        sent: dict[str, int] = {}
        acks = []
        t0 = time.perf_counter()
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            rec = order_placed(i, f"lat-{topics.prefix[-8:]}-{i}")
            sent[str(rec.event_id)] = time.time_ns()
            acks.append(
                await producer.send(
                    topics.orders, rec, key=rec.order_id, event_id=str(rec.event_id)
                )
            )
        await asyncio.gather(*acks)
        ids = set(sent)
        await wait_until(lambda: len(rig.delivered(ids)) == len(ids), 60, "latency emails", 0.2)
        got = rig.delivered(ids)
    except BenchFailed as exc:
        raise BenchFailed(f"{exc}; service log ends:\n{service.log_tail()}") from None
    finally:
        service.stop()
        await topics.delete()
    ms = sorted((min(got[e]) - t) / 1e6 for e, t in sent.items())
    return {
        "events": count,
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2),
    }


async def latency_ab(
    rig: Rig, base: Code, new: Code, rounds: int, rate: float, seconds: float
) -> dict:
    per: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    serde = AvroSerde(REGISTRY, auto_register=True)
    async with EventProducer(rig.kafka, serde) as producer:
        for r in range(rounds):
            for code in _sides(base, new, r):
                row = await latency_round(rig, producer, code, rate, seconds)
                print(f"  latency {code.name}: {row}", flush=True)
                per[code.name].append(row)
    out: dict[str, Any] = {"rate_per_s": rate, "events_per_run": int(rate * seconds)}
    for name, rows in per.items():
        out[name] = {k: _mr([row[k] for row in rows], 2) for k in ("p50_ms", "p99_ms", "max_ms")}
    return out


# ---------------------------------------------------------------- main


def _r(v: dict[str, float], digits: int = 2) -> str:
    return fmt_range(v, digits)


def headline(res: dict[str, Any]) -> dict[str, str]:
    """The figures that matter, as text, first in the JSON (and the README's table)."""
    out: dict[str, str] = {}
    if sink := res.get("sink_ab"):
        new, base = sink["new"], sink["base"]
        out["sink: msgs/s new/base"] = _r(sink["ratio_msgs_per_s_new_over_base"])
        out["sink: CPU per msg base/new"] = _r(sink["ratio_sink_cpu_base_over_new"])
        out["sink: µs CPU per msg new, base"] = (
            f"{_r(new['sink_us_per_msg'], 0)}, {_r(base['sink_us_per_msg'], 0)}"
        )
    for workload, ab in res.get("throughput_ab", {}).items():
        if not isinstance(ab, dict) or "new" not in ab:
            continue
        new, base = ab["new"], ab["base"]
        out[f"{workload}: emails/s new, base"] = (
            f"{_r(new['emails_per_s'], 0)}, {_r(base['emails_per_s'], 0)}"
        )
        out[f"{workload}: emails/s new/base"] = _r(ab["ratio_emails_per_s_new_over_base"])
        out[f"{workload}: service CPU per email base/new"] = _r(
            ab["ratio_service_cpu_base_over_new"]
        )
        for side, row in (("new", new), ("base", base)):
            parts = ", ".join(f"{part} {_r(v, 0)}" for part, v in row["cpu_us_per_email"].items())
            out[f"{workload}: µs CPU per email, {side}"] = parts
    if lat := res.get("latency_ab"):
        for side in ("new", "base"):
            out[f"event -> email at {lat['rate_per_s']}/s, {side}"] = (
                f"p50 {_r(lat[side]['p50_ms'], 1)} ms, p99 {_r(lat[side]['p99_ms'], 1)} ms"
            )
    return out


def _rev(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


async def run(args: argparse.Namespace, base: Code, sides: dict[str, str]) -> None:
    only = set(args.only.split(","))
    events = min(args.events, MAX_EVENTS)
    new = Code("new", ROOT)
    path = ROOT / "bench" / "results" / "notification.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    # Written by write_result, or by the bench before the same-run A/B (superseded).
    for stale in ("benchmark", "when", "machine", "throughput", "latency",
                  "latency_baseline_bare_consume"):  # fmt: skip
        results.pop(stale, None)
    with tempfile.TemporaryDirectory(prefix="notif-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if "sink" in only:
            ab = await sink_ab(base, new, tmp, args.rounds, args.messages)
            results["sink_ab"] = {**ab, "sides": sides}
            print(json.dumps(results["sink_ab"]), flush=True)
        if only & {"throughput", "latency"}:
            async with Rig(tmp, new) as rig:
                if "throughput" in only:
                    ab = await throughput_ab(rig, base, new, args.rounds, events)
                    results["throughput_ab"] = {**ab, "sides": sides}
                    results["throughput_baseline_bare_consume"] = await bare_consume(rig, events)
                if "latency" in only:
                    ab = await latency_ab(rig, base, new, args.rounds, args.rate, args.seconds)
                    results["latency_ab"] = {**ab, "sides": sides}
    if "order_to_email" in only:
        results.update(await order_to_email(args.orders, args.order_rate))
    results["setup"] = {
        "topics": "private, 3 partitions; acks=all producer; keyed by order id",
        "services": "services.notification.main subprocesses (uvloop), INFO logs, every span "
        "exported (JSON lines), defaults otherwise; not pinned (the pipeline spans both cores)",
        "smtp": "private sink of the working tree (one .eml file per message) for both sides",
        "user_directory": "stand-in GetUser server, its own process (gRPC, loopback)",
        "cpu": "/proc utime+stime over the window from the first to the last email; Kafka and "
        "PostgreSQL are shared with the rest of the machine",
    }
    results = {
        "headline": headline(results),
        **{k: v for k, v in results.items() if k != "headline"},
    }
    results["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    write_result("notification", results)
    print(json.dumps({k: v for k, v in results.items() if k != "setup"}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the 'base' side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--order-rate", type=float, default=100.0)
    parser.add_argument("--only", default="sink,throughput,latency,order_to_email")
    args = parser.parse_args()
    base_rev = _rev(args.base)
    sides = {"base": base_rev, "new": f"working tree on {_rev('HEAD')}"}
    run_main(run(args, Code("base", base_tree(base_rev)), sides))


if __name__ == "__main__":
    main()
