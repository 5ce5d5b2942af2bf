"""Where the order service's own CPU per placed order goes, by area: PlaceOrder at a fixed
rate against the stack's order service (order_cost's load: the shopper's token, products
with stock), py-spy sampling that process meanwhile (`--gil`: only the thread running
Python, so threads waiting on a socket or on the GIL are not counted), every sample put in
one area by what its stack holds, and the shares scaled by the process's CPU per order over
the same window (from /proc).

    python -m bench.order_profile --label NAME [--rate 40] [--seconds 25]

Writes bench/results/order_profile.json (runs[label]: CPU ms per order of the order
process, and per area the share of samples and its ms per order) and keeps the raw
collapsed stacks under /tmp for a closer look. The areas, in the order a sample is matched:
the relay's work (Avro, producer spans, aiokafka, store, own), aiokafka's background I/O,
the sweeper, the store client (motor/pymongo with its executor threads), the ReserveStock
call (its client span apart), spans, request validation, metrics, logs, the order's own
code (leaf frame in services/order, JSON, uuid, protobuf conversions), the gRPC server
(grpclib, h2, HPACK, the runtime's call wrapper). py-spy slows the process it samples a
little: compare areas, not this CPU figure with order_cost's.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, BenchFailed, git_head, machine, proc_cpu_s, record_entry, run_main

# A large Kafka response decoded once in a while (metadata), not per order: left out.
ONE_OFF = ("AIOKafkaConnection._read", "Struct.decode")
AREAS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # (area, the stack holds one of, and also one of (empty: no second condition))
    ("relay: Avro encode", ("OutboxRelay",), ("serde.py", "confluent_kafka", "fastavro")),
    ("relay: producer spans", ("OutboxRelay",), ("opentelemetry", "runtime/tracing")),
    ("relay: aiokafka send", ("OutboxRelay",), ("aiokafka",)),
    ("relay: store (claim deletes, gauges)", ("OutboxRelay",), ("motor/", "pymongo/")),
    ("relay: own (unpack, bookkeeping)", ("OutboxRelay", "relay_task"), ()),
    ("Kafka producer I/O (aiokafka background)", ("aiokafka",), ()),
    ("sweeper", ("OrderService.sweep",), ()),
    (
        "store client: motor/pymongo (BSON, executor threads, sockets)",
        ("motor/", "pymongo/", "bson/", "Thread._bootstrap"),
        (),
    ),
    ("ReserveStock call: client span", ("reserve_stock",), ("opentelemetry", "runtime/tracing")),
    ("ReserveStock call: grpclib/h2 client", ("reserve_stock",), ()),
    ("spans (server span, db spans, export)", ("opentelemetry", "runtime/tracing"), ()),
    ("request validation (protovalidate)", ("protovalidate", "runtime/validation"), ()),
    ("metrics", ("prometheus_client", "runtime/metrics", "order/metrics"), ()),
    ("logs (access log)", ("runtime/logs", "logging/"), ()),
]
OWN_LEAF = (
    "services/order", "order/", "handlers.py", "service.py", "domain.py", "values.py",
    "mapping.py", "validation.py", "json/", "uuid.py", "protobuf", "runtime/convert",
)  # fmt: skip
OWN = "order code (handlers, domain, mapping, JSON, protobuf conversions)"
SERVER = "gRPC server (grpclib, h2, HPACK, runtime call wrapper, auth)"
SERVER_FRAMES = ("grpclib/", "h2/", "hpack/", "hyperframe", "runtime/transport", "runtime/calls",
                 "runtime/rpc", "runtime/auth")  # fmt: skip


def area(stack: str) -> str | None:
    """The area of one collapsed stack (frames joined by ';'), None for the one-off."""
    if all(f in stack for f in ONE_OFF):
        return None
    for name, any_of, also in AREAS:
        if any(p in stack for p in any_of) and (not also or any(p in stack for p in also)):
            return name
    if any(p in stack.rsplit(";", 1)[-1] for p in OWN_LEAF):
        return OWN
    if any(p in stack for p in SERVER_FRAMES):
        return SERVER
    return "event loop / other"


def by_area(raw: Path) -> tuple[int, dict[str, int]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        name = area(stack)
        if name is not None:
            counts[name] += int(n)
    return sum(counts.values()), dict(counts.most_common())


def order_pid() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "stack", "status"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[1] == "order" and words[2] == "pid":
            return int(words[3])
    raise BenchFailed("the stack's order service is not running (python -m stack status)")


def report(r: dict[str, Any]) -> list[str]:
    """bench/README.md section: per run, CPU ms per order of the order process by area."""
    runs = r.get("runs", {})
    out = ["## order_profile: where the order service's own CPU per placed order goes", ""]
    out += [(__doc__ or "").split("\n\n")[0].replace("\n", " "), ""]
    for label, e in runs.items():
        place = e.get("place", {})
        out.append(
            f"- **{label}** ({e.get('when', '')}, commit {e.get('commit', '')}; "
            f"{e.get('orders', 0)} orders, {e.get('samples', 0)} samples, PlaceOrder p50 "
            f"{place.get('p50_ms', '')} / p99 {place.get('p99_ms', '')} ms): {e.get('note', '')}"
        )
    names = list(dict.fromkeys(a for e in runs.values() for a in e.get("areas", {})))
    out += ["", "| area: ms per order (share of samples) | " + " | ".join(runs) + " |",
            "|---|" + "---:|" * len(runs)]  # fmt: skip
    for name in names:
        cells = []
        for e in runs.values():
            a = e.get("areas", {}).get(name)
            cells.append(f"{a['ms_per_order']:.2f} ({a['share_pct']:.1f}%)" if a else "")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    total = " | ".join(f"**{e.get('order_cpu_ms_per_order', 0):.2f}**" for e in runs.values())
    return [*out, f"| **order process, CPU ms per order** | {total} |", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="name of this run in the results file")
    p.add_argument("--rate", type=float, default=40.0, help="orders per second")
    p.add_argument("--seconds", type=float, default=25.0)
    p.add_argument("--note", default="")
    args = p.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise BenchFailed("py-spy not found")
    from bench.order_cost import make_fixtures

    fixtures = run_main(make_fixtures(int(args.rate * args.seconds) + 50))
    pid = order_pid()
    keep = Path(tempfile.mkdtemp(prefix="order-profile-"))
    raw, placed = keep / "order.collapsed", keep / "placed.json"
    cpu0 = proc_cpu_s(pid)
    sampler = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--gil", "--rate", "200", "--format", "raw",
         "--duration", str(int(args.seconds + 2)), "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "bench.order_cost", "--load", "--rate", str(args.rate),
         "--seconds", str(args.seconds), "--settle", "2", "--out", str(placed),
         "--fixtures", json.dumps(fixtures)],
        cwd=ROOT, check=True,
    )  # fmt: skip
    sampler.wait(60)
    cpu1 = proc_cpu_s(pid)
    load = json.loads(placed.read_text())
    orders = load["orders"]
    if not orders or not raw.exists():
        raise BenchFailed(f"no orders ({orders}) or no samples ({raw})")
    ms_per_order = (cpu1 - cpu0) / orders * 1000
    total, counts = by_area(raw)
    entry: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_head(),
        "note": args.note,
        "settings": {"rate_per_s": args.rate, "seconds": args.seconds, "sampler": "py-spy --gil"},
        "machine": machine(),
        "orders": orders,
        "order_cpu_ms_per_order": round(ms_per_order, 2),
        "samples": total,
        "areas": {
            name: {
                "share_pct": round(100 * n / total, 1),
                "ms_per_order": round(ms_per_order * n / total, 2),
            }
            for name, n in counts.items()
        },
        "place": load["place"],
        "raw": str(raw),
    }  # fmt: skip
    path = record_entry("order_profile", "runs", args.label, entry)
    print(f"{orders} orders, order process {ms_per_order:.2f} ms CPU per order; raw {raw}")
    for name, a in entry["areas"].items():
        print(f"  {a['share_pct']:5.1f}%  {a['ms_per_order']:5.2f} ms  {name}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
