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

    python -m bench.notification_bench [--base REV] [--sink-base REV] [--new REV|DIR]
        [--rounds 3] [--events 2000] [--messages 2000] [--rate 100] [--seconds 5]
        [--orders 300] [--order-rate 100] [--only sink,throughput,latency,order_to_email]
        [--workers N]
Writes bench/results/notification.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, fmt_range, run_main, write_result
from bench.notification_ab import Rig, bare_consume, latency_ab, sink_ab, throughput_ab
from bench.notification_order import order_to_email
from bench.notification_rig import Code, base_tree

MAX_EVENTS = 5000


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
    throughput = [("", res.get("throughput_ab", {}))] + [
        (f"{k.removeprefix('throughput_ab_new_').replace('_', ' ')} vs 1: ", v)
        for k, v in res.items()
        if k.startswith("throughput_ab_new_")
    ]
    for prefix, workload, ab in ((p, w, ab) for p, t in throughput for w, ab in t.items()):
        if not isinstance(ab, dict) or not isinstance(ab.get("new"), dict):
            continue
        workload = prefix + workload
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
    if (o2e := res.get("order_to_email")) and "p99_ms" in o2e:
        split = res.get("order_to_email_split_place_to_topic", {})
        mine = res.get("order_to_email_split_topic_to_email", {})
        out[f"PlaceOrder reply -> email at {o2e['rate_per_s']}/s (whole stack)"] = (
            f"p50 {o2e['p50_ms']} ms, p99 {o2e['p99_ms']} ms; reply -> OrderPlaced on the "
            f"topic p50 {split.get('p50_ms')} ms, p99 {split.get('p99_ms')} ms; topic -> "
            f"email p50 {mine.get('p50_ms')} ms, p99 {mine.get('p99_ms')} ms"
        )
        cpu = res.get("order_to_email_cpu_ms_per_order", {})
        out["ms CPU per order meanwhile (idle rate subtracted)"] = ", ".join(
            f"{k} {v}" for k, v in cpu.items()
        )
    return out


def _rev(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def _save(results: dict[str, Any]) -> None:
    """Write what is measured so far (a later scenario failing keeps the earlier ones)."""
    # The keys bench/report.py's summary reads: the new side's figures.
    if ab := results.get("throughput_ab"):
        results["throughput"] = {
            "events": ab["events_per_run"],
            "emails_per_s": ab["distinct_users"]["new"]["emails_per_s"]["median"],
            "note": "new side, every event a different user; throughput_ab has both sides",
        }
    if lat := results.get("latency_ab"):
        results["latency"] = {
            "rate_per_s": lat["rate_per_s"],
            "p50_ms": lat["new"]["p50_ms"]["median"],
            "p99_ms": lat["new"]["p99_ms"]["median"],
        }
        results["latency_baseline_bare_consume"] = {
            "p50_ms": lat["new"]["bare_consumer_p50_ms"]["median"],
            "p99_ms": lat["new"]["bare_consumer_p99_ms"]["median"],
        }
    results["setup"] = {
        "topics": "private, 3 partitions; acks=all producer; keyed by order id",
        "services": "services.notification.main subprocesses (uvloop, one worker), INFO logs, "
        "every span exported (JSON lines), defaults otherwise; not pinned (the pipeline spans "
        "both cores)",
        "smtp": "a private sink of the new side's code per round, one .eml file per message "
        "in a tmpfs dir (/dev/shm): on this VM's ext4 a file create + rename alone costs the "
        "sink 0.3-0.6 ms of kernel time per message",
        "user_directory": "stand-in GetUser server, its own process (gRPC, loopback)",
        "cpu": "/proc utime+stime over the window from the first to the last email; Kafka's and "
        "PostgreSQL's rate in the 2 s before the service started is subtracted (they serve the "
        "whole machine)",
    }
    out = {"headline": headline(results), **{k: v for k, v in results.items() if k != "headline"}}
    out["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    write_result("notification", out)


async def run(args: argparse.Namespace, base: Code, new: Code, sides: dict[str, str]) -> None:
    only = set(args.only.split(","))
    events = min(args.events, MAX_EVENTS)
    path = ROOT / "bench" / "results" / "notification.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for stale in ("benchmark", "when", "machine"):  # written by write_result
        results.pop(stale, None)
    with tempfile.TemporaryDirectory(prefix="notif-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if "sink" in only:
            ab = await sink_ab(args.sink_base_code, new, tmp, args.rounds, args.messages)
            results["sink_ab"] = {**ab, "sides": args.sink_sides}
            _save(results)
        if only & {"throughput", "latency"}:
            async with Rig(tmp, new, args.workers) as rig:
                if "throughput" in only:
                    ab = await throughput_ab(rig, base, new, args.rounds, events)
                    if args.workers > 1:
                        # Its own A/B: whether more consumer processes pay (--base = --new).
                        key = f"throughput_ab_new_{args.workers}_workers"
                        results[key] = {**ab, "sides": {**sides, "workers_new": args.workers}}
                        _save(results)
                        print(json.dumps(headline(results), indent=1))
                        return
                    results["throughput_ab"] = {**ab, "sides": sides}
                    results["throughput_baseline_bare_consume"] = await bare_consume(rig, events)
                    _save(results)
                if "latency" in only:
                    ab = await latency_ab(rig, base, new, args.rounds, args.rate, args.seconds)
                    results["latency_ab"] = {**ab, "sides": sides}
                    _save(results)
    if "order_to_email" in only:
        results.update(await order_to_email(args.orders, args.order_rate))
        _save(results)
    print(json.dumps(results.get("headline", headline(results)), indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the 'base' side")
    parser.add_argument(
        "--sink-base", default="", help="git revision of the sink scenario's 'base' (--base)"
    )
    parser.add_argument(
        "--new",
        default="",
        help="git revision or directory of the 'new' side (default: the working tree)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--order-rate", type=float, default=100.0)
    parser.add_argument("--only", default="sink,throughput,latency,order_to_email")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="NOTIFICATION_WORKERS of the new side; > 1 runs throughput only, results under "
        "throughput_ab_new_<N>_workers",
    )  # fmt: skip
    args = parser.parse_args()
    base_rev = _rev(args.base)
    if args.new and Path(args.new).is_dir():  # a checkout prepared by hand
        new = Code("new", Path(args.new).resolve())
        sides = {"base": base_rev, "new": f"{args.new}: {_rev('HEAD')} + uncommitted change"}
    elif args.new:
        new = Code("new", base_tree(_rev(args.new)))
        sides = {"base": base_rev, "new": _rev(args.new)}
    else:
        new = Code("new", ROOT)
        sides = {"base": base_rev, "new": f"working tree on {_rev('HEAD')}"}
    sink_rev = _rev(args.sink_base or args.base)
    args.sink_base_code = Code("base", base_tree(sink_rev))
    args.sink_sides = {**sides, "base": sink_rev}
    run_main(run(args, Code("base", base_tree(base_rev)), new, sides))


if __name__ == "__main__":
    main()
