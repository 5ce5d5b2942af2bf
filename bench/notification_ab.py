"""The same-run A/B scenarios of bench/notification_bench.py: the SMTP sink, notification
throughput with CPU by part, and event -> email latency, each side's code from its own tree.
Rounds alternate the side order; ratios are computed within a round, then median (min-max).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from bench.common import ROOT, BenchFailed, free_port, median_range, percentile, wait_port
from bench.notification_rig import (
    BOOTSTRAP,
    REGISTRY,
    Code,
    Mailbox,
    PartCpu,
    Service,
    Sink,
    TopicSet,
    order_placed,
    produce,
    spawn,
    stop,
    wait_until,
)
from services.runtime.kafka import AvroSerde, EventConsumer, EventProducer, KafkaConfig

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
        "sink (mail dir on tmpfs); base: the base revision's stack/smtp_sink.py",
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
    """What every throughput and latency round shares: one stand-in user service. Each
    round gets its own private sink of the 'new' code (a fresh mail dir to count)."""

    def __init__(self, tmp: Path, new: Code, new_workers: int = 1) -> None:
        self.tmp = tmp
        self.new = new
        self.new_workers = new_workers  # worker processes of the 'new' side's service
        self.users_port = free_port()
        self.users: subprocess.Popen | None = None
        self.kafka = KafkaConfig(bootstrap_servers=BOOTSTRAP, registry_url=REGISTRY)

    async def __aenter__(self) -> Rig:
        self.users = spawn(
            Code("new", ROOT), ["-m", "bench.notification_rig", "users", str(self.users_port)],
            dict(os.environ), self.tmp / "users.log",
        )  # fmt: skip
        await wait_port(self.users_port, 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.users)

    @contextlib.asynccontextmanager
    async def sink(self) -> AsyncIterator[tuple[Sink, Mailbox]]:
        sink = Sink(self.new, self.tmp)
        await sink.start()
        try:
            yield sink, Mailbox(sink.mail)
        finally:
            sink.stop()

    def service(self, code: Code, topics: TopicSet, sink: Sink) -> Service:
        extra = {"NOTIFICATION_WORKERS": str(self.new_workers)} if code.name == "new" else {}
        return Service(
            code, self.tmp, topics, sink.smtp_port, f"127.0.0.1:{self.users_port}",
            extra_env=extra,
        )  # fmt: skip


def _delivered(mailbox: Mailbox, event_ids: set[str]) -> dict[str, list[int]]:
    return {e: t for e, t in mailbox.read().items() if e in event_ids}


SHARED = ("kafka", "postgres")  # serve the whole machine: their idle rate is subtracted


async def throughput_round(
    rig: Rig, producer: EventProducer, code: Code, events: int, user_of: Callable[[int], str]
) -> dict[str, Any]:
    topics = TopicSet().create()
    async with rig.sink() as (sink, mailbox):
        service = rig.service(code, topics, sink)
        try:
            records = [
                order_placed(i, f"bu-{topics.prefix[-8:]}-{user_of(i)}") for i in range(events)
            ]
            ids = set(await produce(producer, topics.orders, records))
            cpu = PartCpu({"smtp sink": sink.proc.pid, "stand-in user service": rig.users.pid})
            idle, idle_t0 = cpu.snapshot(), time.monotonic()
            await asyncio.sleep(2)  # what Kafka and PostgreSQL spend meanwhile for others
            idle_used, idle_s = PartCpu.delta(idle, cpu.snapshot()), time.monotonic() - idle_t0
            service.start()
            assert service.proc is not None
            cpu.pids["notification"] = service.proc.pid
            await wait_until(lambda: mailbox.count() >= 1, 90, f"{code.name}: first email", 0.01)
            first_count, before, t0 = mailbox.count(), cpu.snapshot(), time.monotonic()
            await wait_until(
                lambda: mailbox.count() >= events, 60 + events / 5, f"{code.name}: all emails", 0.1
            )
            used, window_s = PartCpu.delta(before, cpu.snapshot()), time.monotonic() - t0
            counted = mailbox.count() - first_count
            got = _delivered(mailbox, ids)
        except BenchFailed as exc:
            raise BenchFailed(f"{exc}; service log ends:\n{service.log_tail()}") from None
        finally:
            service.stop()
            await topics.delete()
    if set(got) != ids:
        raise BenchFailed(f"{code.name}: {len(ids - set(got))} of {events} emails missing")
    for part in SHARED:
        used[part] = max(0.0, used[part] - idle_used[part] / idle_s * window_s)
    times = sorted(t for ts in got.values() for t in ts)
    span_s = (times[-1] - times[0]) / 1e9
    return {
        "emails_per_s": round((len(times) - 1) / span_s, 1),
        "duplicates": len(times) - len(ids),
        "cpu_us_per_email": {k: round(v / counted * 1e6, 1) for k, v in used.items()},
        "cpu_window_emails": counted,
        "load_1m": round(os.getloadavg()[0], 1),
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
                    "load_1m": [row["load_1m"] for row in rows],
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
    async with rig.sink() as (sink, mailbox):
        service = rig.service(code, topics, sink)
        # The same records read by a bare consumer (own group): Kafka's share of the latency.
        bare = EventConsumer(
            rig.kafka, AvroSerde(REGISTRY), [topics.orders], group_id=f"{topics.prefix}.bare",
        )  # fmt: skip
        read_at: dict[str, int] = {}

        async def tail() -> None:
            while True:
                for ev in await bare.getmany(timeout_ms=100, max_records=500):
                    read_at.setdefault(str(ev.event_id), time.time_ns())

        await bare.start()
        tail_task = asyncio.ensure_future(tail())
        try:
            service.start()
            warm = [order_placed(i, "warm") for i in range(3)]
            warm_ids = set(await produce(producer, topics.orders, warm))
            await wait_until(
                lambda: len(_delivered(mailbox, warm_ids)) == 3, 90, "warm-up emails", 0.1
            )
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
                ack = await producer.send(
                    topics.orders, rec, key=rec.order_id, event_id=str(rec.event_id)
                )
                acks.append(ack)
            await asyncio.gather(*acks)
            ids = set(sent)
            await wait_until(
                lambda: len(_delivered(mailbox, ids)) == len(ids), 60, "latency emails", 0.2
            )
            got = _delivered(mailbox, ids)
        except BenchFailed as exc:
            raise BenchFailed(f"{exc}; service log ends:\n{service.log_tail()}") from None
        finally:
            tail_task.cancel()
            await asyncio.gather(tail_task, return_exceptions=True)
            await bare.stop()
            service.stop()
            await topics.delete()
    ms = sorted((min(got[e]) - t) / 1e6 for e, t in sent.items())
    bare_ms = sorted((read_at[e] - t) / 1e6 for e, t in sent.items() if e in read_at)
    return {
        "events": count,
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2),
        "bare_consumer_p50_ms": round(statistics.median(bare_ms), 2) if bare_ms else None,
        "bare_consumer_p99_ms": round(percentile(bare_ms, 99), 2) if bare_ms else None,
        "load_1m": round(os.getloadavg()[0], 1),
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
    keys = ("p50_ms", "p99_ms", "max_ms", "bare_consumer_p50_ms", "bare_consumer_p99_ms")
    for name, rows in per.items():
        out[name] = {k: _mr([row[k] for row in rows if row[k] is not None], 2) for k in keys}
        out[name]["load_1m"] = [row["load_1m"] for row in rows]
    return out
