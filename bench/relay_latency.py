"""PlaceOrder reply -> its OrderPlaced on the topic, at a fixed order rate against the stack's
order service (its in-process relay publishes what it writes): issue 23's latency figure of
the relay, without the CPU accounting of bench/order_cost.py (whose load child this runs).

    python -m bench.relay_latency --change NAME [--rate 100] [--seconds 10] [--rounds 3]

Open loop at `--rate` for `--seconds` per round (bench/order_cost.py's `load`: the shopper's
own token, one line per order, a new idempotency key each, shop.orders.v1 tailed from its
end); the entry NAME in bench/results/relay_ab.json gets each round's PlaceOrder and reply ->
topic p50/p99 and their medians. Fails if any call fails or any OrderPlaced never arrives.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import git_head, machine, median_range, record_entry, run_main
from bench.order_cost import load, make_fixtures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--change", required=True)
    ap.add_argument("--rate", type=float, default=100.0, help="orders per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=3.0, help="after the last order")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    fixtures = run_main(make_fixtures(int(args.rate * args.seconds * args.rounds)))
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        one = argparse.Namespace(
            rate=args.rate, seconds=args.seconds, settle=args.settle,
            fixtures=json.dumps(fixtures), as_platform=False,
        )  # fmt: skip
        got = run_main(load(one))
        rounds.append(got)
        print(
            f"round {r + 1}: {got['orders']} orders at {got['place']['achieved_per_s']}/s, "
            f"PlaceOrder p50 {got['place']['p50_ms']} ms, reply->topic p50 "
            f"{got['reply_to_topic']['p50_ms']} p99 {got['reply_to_topic']['p99_ms']} ms",
            flush=True,
        )
    head = git_head()
    entry = {
        "what": f"PlaceOrder reply -> OrderPlaced read from shop.orders.v1 at {args.rate:g} "
        f"orders/s for {args.seconds:g} s x {args.rounds} rounds against the stack's order "
        f"service (working tree on {head}, its in-process relay), as the shopper",
        "note": args.note,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "reply_to_topic_p50_ms": median_range(r["reply_to_topic"]["p50_ms"] for r in rounds),
        "reply_to_topic_p99_ms": median_range(r["reply_to_topic"]["p99_ms"] for r in rounds),
        "place_p50_ms": median_range(r["place"]["p50_ms"] for r in rounds),
        "place_p99_ms": median_range(r["place"]["p99_ms"] for r in rounds),
        "achieved_per_s": median_range(r["place"]["achieved_per_s"] for r in rounds),
        "rounds": rounds,
    }
    path = record_entry("relay_ab", "changes", args.change, entry)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
