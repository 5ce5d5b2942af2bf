"""Where the order service's own CPU per placed order goes, by area: PlaceOrder at a fixed
rate against the stack's order service (order_cost's load: the shopper's token, products
with stock), py-spy sampling that process meanwhile (`--gil`: only the thread running
Python, so threads waiting on a socket or on the GIL are not counted), every sample put in
one area by what its stack holds, and the shares scaled by the process's CPU per order over
the same window (from /proc).

    python -m bench.order_profile --label NAME [--rate 40] [--seconds 25]
    python -m bench.order_profile --target product --label NAME [--users 60] [--seconds 20]

Writes bench/results/order_profile.json (runs[label]: CPU ms per order of the order
process, and per area the share of samples and its ms per order) and keeps the raw
collapsed stacks under /tmp for a closer look. The areas, in the order a sample is matched:
the relay's work (Avro, producer spans, aiokafka, store, own), aiokafka's background I/O,
the sweeper, the store client (motor/pymongo with its executor threads), the ReserveStock
call (its client span apart), spans, request validation, metrics, logs, the order's own
code (leaf frame in services/order, JSON, uuid, protobuf conversions), the gRPC server
(grpclib, h2, HPACK, the runtime's call wrapper). py-spy slows the process it samples a
little: compare areas, not this CPU figure with order_cost's.

`--target product` samples the stack's product process the same way under one step of the
shop mix (bench.shop_load --at-users) instead, and writes product_runs[label]: the
product process's CPU us per shop request, the product RPCs per shop request (from its
/metrics, by method), per area the share of samples and us per shop request, and per RPC
the us per call: the samples whose stack holds that handler, plus the samples that hold
no handler (gRPC server, event loop, listener) shared out by calls.
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


# The product process: its reads behind the catalog cache, the cache's own LISTEN
# connection, then the areas every service shares.
PRODUCT_AREAS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("cache listener (LISTEN/NOTIFY, fence queries)", ("ChangeListener", "_listen"), ()),
    ("database: SQLAlchemy/asyncpg (incl. its spans)", ("sqlalchemy/", "asyncpg/",
                                                       "runtime/db"), ()),
    ("spans (server span, export)", ("opentelemetry", "runtime/tracing"), ()),
    ("request validation (protovalidate)", ("protovalidate", "runtime/validation"), ()),
    ("metrics", ("prometheus_client", "runtime/metrics"), ()),
    ("logs (access log)", ("runtime/logs", "logging/"), ()),
]  # fmt: skip
PRODUCT_OWN_LEAF = ("(product/", "protobuf", "runtime/convert", "timestamp")
PRODUCT_OWN = "product code (handlers, cache, domain, protobuf messages)"
RPCS = ("GetProduct", "ListProducts", "ListCategories", "SearchProducts", "ReserveStock",
        "ReleaseStock", "CreateProduct", "UpdateProduct")  # fmt: skip


def area(stack: str, target: str = "order") -> str | None:
    """The area of one collapsed stack (frames joined by ';'), None for the one-off."""
    if all(f in stack for f in ONE_OFF):
        return None
    areas, own_leaf, own = (
        (PRODUCT_AREAS, PRODUCT_OWN_LEAF, PRODUCT_OWN)
        if target == "product"
        else (AREAS, OWN_LEAF, OWN)
    )
    for name, any_of, also in areas:
        if any(p in stack for p in any_of) and (not also or any(p in stack for p in also)):
            return name
    if any(p in stack.rsplit(";", 1)[-1] for p in own_leaf):
        return own
    if any(p in stack for p in SERVER_FRAMES):
        return SERVER
    return "event loop / other"


def rpc_of(stack: str) -> str | None:
    """The product RPC whose handler the stack runs in (py-spy names a frame
    `ProductHandlers.GetProduct (product/handlers.py:NN)`), None outside every handler."""
    for frame in stack.split(";"):
        if "product/handlers.py" in frame:
            name = frame.split(" ", 1)[0].rsplit(".", 1)[-1]
            if name in RPCS:
                return name
    return None


def by_area(raw: Path, target: str = "order") -> tuple[int, dict[str, int]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        name = area(stack, target)
        if name is not None:
            counts[name] += int(n)
    return sum(counts.values()), dict(counts.most_common())


def by_rpc(raw: Path) -> dict[str, int]:
    """Samples per product RPC ("" for those in no handler)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[rpc_of(stack) or ""] += int(n)
    return dict(counts)


def product_calls() -> dict[str, float]:
    """The product service's calls so far by RPC (any status), from its /metrics."""
    from urllib.request import urlopen

    from shop.topology import SERVICES

    port = SERVICES["product"].metrics_port
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    calls: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if line.startswith("rpc_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0].rsplit("/", 1)[-1]
            calls[method] += float(line.rsplit(" ", 1)[1])
    return dict(calls)


def stack_pid(service: str) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "stack", "status"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[1] == service and words[2] == "pid":
            return int(words[3])
    raise BenchFailed(f"the stack's {service} service is not running (python -m stack status)")


def order_pid() -> int:
    return stack_pid("order")


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
    out += [f"| **order process, CPU ms per order** | {total} |", ""]
    return out + product_report(r.get("product_runs", {}))


def product_report(runs: dict[str, Any]) -> list[str]:
    """The product target's runs: us per shop request by area, and per call by RPC."""
    if not runs:
        return []
    out = ["### product process under the shop mix (--target product)", ""]
    for label, e in runs.items():
        out.append(
            f"- **{label}** ({e.get('when', '')}, commit {e.get('commit', '')}; "
            f"{e.get('users', '')} users, {e.get('requests', 0)} shop requests at "
            f"{e.get('req_per_s', '')} req/s, p99 {e.get('p99_ms', '')} ms, "
            f"{e.get('samples', 0)} samples): {e.get('note', '')}"
        )
    names = list(dict.fromkeys(a for e in runs.values() for a in e.get("areas", {})))
    head = " | ".join(runs)
    out += ["", f"| area: us per shop request (share of samples) | {head} |",
            "|---|" + "---:|" * len(runs)]  # fmt: skip
    for name in names:
        cells = []
        for e in runs.values():
            a = e.get("areas", {}).get(name)
            cells.append(f"{a['us_per_request']:.0f} ({a['share_pct']:.1f}%)" if a else "")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    total = " | ".join(f"**{e.get('product_cpu_us_per_request', 0):.0f}**" for e in runs.values())
    out += [f"| **product process, CPU us per shop request** | {total} |", ""]
    rpcs = list(dict.fromkeys(m for e in runs.values() for m in e.get("rpcs", {})))
    out += [f"| RPC: calls per shop request, us per call | {head} |",
            "|---|" + "---:|" * len(runs)]  # fmt: skip
    for m in rpcs:
        cells = []
        for e in runs.values():
            c = e.get("rpcs", {}).get(m)
            cells.append(f"{c['per_request']:.3f}, {c['us_per_call']:.0f} us" if c else "")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*out, ""]


def profile_product(args: argparse.Namespace, spy: str) -> None:
    """One shop-mix step with the stack's product process sampled (see the docstring)."""
    pid = stack_pid("product")
    keep = Path(tempfile.mkdtemp(prefix="product-profile-"))
    raw = keep / "product.collapsed"
    calls0, cpu0 = product_calls(), proc_cpu_s(pid)
    sampler = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--gil", "--rate", "200", "--format", "raw",
         "--duration", str(int(args.seconds + 4)), "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "bench.shop_load", "--at-users", str(args.users),
         "--seconds", str(args.seconds)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    cpu1, calls1 = proc_cpu_s(pid), product_calls()
    sampler.wait(60)
    step = json.loads(out.strip().splitlines()[-1])
    requests = step["requests"]
    if not requests or not raw.exists():
        raise BenchFailed(f"no shop requests ({requests}) or no samples ({raw})")
    us_per_request = (cpu1 - cpu0) / requests * 1e6
    calls = {m: n - calls0.get(m, 0.0) for m, n in calls1.items() if n > calls0.get(m, 0.0)}
    total, counts = by_area(raw, "product")
    rpc_samples = by_rpc(raw)
    rpc_total = sum(rpc_samples.values())
    all_calls = sum(calls.values())
    outside = rpc_samples.get("", 0) / rpc_total  # server, loop, listener: shared by calls
    per_call_shared = us_per_request * requests * outside / all_calls
    rpcs = {}
    for m, n in sorted(calls.items(), key=lambda kv: -kv[1]):
        own = us_per_request * requests * rpc_samples.get(m, 0) / rpc_total / n
        rpcs[m] = {
            "calls": int(n),
            "per_request": round(n / requests, 3),
            "us_per_call": round(own + per_call_shared, 1),
            "us_per_call_in_handler": round(own, 1),
        }
    entry: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_head(),
        "note": args.note,
        "settings": {"users": args.users, "seconds": args.seconds, "sampler": "py-spy --gil"},
        "machine": machine(),
        "users": args.users,
        "requests": requests,
        "req_per_s": step["req_per_s"],
        "p99_ms": step["p99_ms"],
        "errors": step["errors"],
        "product_cpu_us_per_request": round(us_per_request, 1),
        "product_calls_per_request": round(all_calls / requests, 3),
        "samples": total,
        "areas": {
            name: {
                "share_pct": round(100 * n / total, 1),
                "us_per_request": round(us_per_request * n / total, 1),
            }
            for name, n in counts.items()
        },
        "rpcs": rpcs,
        "shared_us_per_call": round(per_call_shared, 1),
        "raw": str(raw),
    }  # fmt: skip
    path = record_entry("order_profile", "product_runs", args.label, entry)
    print(f"{requests} shop requests ({step['req_per_s']} req/s, p99 {step['p99_ms']} ms), "
          f"product process {us_per_request:.0f} us CPU per request, "
          f"{all_calls / requests:.2f} product calls per request; raw {raw}")  # fmt: skip
    for name, a in entry["areas"].items():
        print(f"  {a['share_pct']:5.1f}%  {a['us_per_request']:6.0f} us  {name}")
    for m, c in rpcs.items():
        print(f"  {m:15} {c['per_request']:.3f}/request  {c['us_per_call']:6.0f} us/call "
              f"({c['us_per_call_in_handler']:.0f} in its handler)")  # fmt: skip
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="name of this run in the results file")
    p.add_argument("--rate", type=float, default=40.0, help="orders per second")
    p.add_argument("--seconds", type=float, default=25.0)
    p.add_argument("--note", default="")
    p.add_argument("--target", choices=("order", "product"), default="order")
    p.add_argument("--users", type=int, default=60, help="shop users (--target product)")
    args = p.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise BenchFailed("py-spy not found")
    if args.target == "product":
        profile_product(args, spy)
        return
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
