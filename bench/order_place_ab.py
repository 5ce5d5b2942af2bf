"""Same-run A/B of PlaceOrder latency: two order servers side by side, interleaved rounds.

Side `new` runs the working tree, side `base` a git revision checked out as a worktree under
/tmp (or both the working tree against two FerretDB URLs, to A/B a storage setting). Both are
subprocesses on spare ports (relay and sweeper off, each its own scratch database) using the
stack's product and user services; PlaceOrder goes direct over loopback gRPC, each call a new
idempotency key, concurrency 1 and 8, bounded by calls and seconds per round. The entry
`--change` in bench/results/order_place_ab.json gets, per concurrency, both sides' p50/p99/
mean/calls/s over all rounds and the ratios base/new (latency: >1 = new is faster), as the
median (min-max) of the per-round ratios.

    python -m bench.order_place_ab --change NAME --base REV [--rounds 4] [--calls 150]
    python -m bench.order_place_ab --change NAME --base-mongo URL --new-mongo URL
    python -m bench.order_place_ab --change NAME --seed 5000 --twins new
    python -m bench.order_place_ab --change NAME --base-s2s direct --new-s2s envoy
    python -m bench.order_place_ab --change NAME --product-base REV
    python -m bench.order_place_ab --change NAME --base REV --as-shopper
    python -m bench.order_place_ab --change NAME --base-env SHOPMESH_TRACE_SAMPLE=1.0 \
        --new-env SHOPMESH_TRACE_SAMPLE=0.1

`--product-base REV` gives each side a product server of its own (base: REV, new: the working
tree), to A/B a change of ReserveStock. Each round also records CPU per call of the side's
order (and product) server and of the shared parts it drives (FerretDB, PostgreSQL's
ferretdb/product/user backends, the user service): sides alternate, so a round's CPU is its
side's, beside whatever else the shared machine does meanwhile.

`--seed N` puts N confirmed orders in each side's database first (lookups on FerretDB cost
with the collection's size); `--twins new` gives only side new the GIN twins the stack adds
to FerretDB's indexes (stack.ferretdb.twin_indexes), to measure them; `--twins both` gives
them to both sides, as the stack's own database has them (`base`: to side base alone, when
side new's FerretDB is not on the stack's PostgreSQL). `--base-s2s/--new-s2s
direct|envoy` choose how each side's order server reaches product and user: their ports, or
the stack Envoy's internal listener (what `make up` configures).

Sides, fixtures and CPU by part: bench/order_place_sides.py.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchFailed,
    Result,
    git_head,
    machine,
    median_range,
    record_entry,
    run_main,
)
from bench.order_place_sides import (
    FIXTURE_TAG,
    MONGO,
    S2S,
    Side,
    cpu_by_part,
    fixtures,
    seed,
    shopper_token,
)


async def place_round(
    side: Side,
    user_id: str,
    product_ids: list[str],
    concurrency: int,
    calls: int,
    seconds: float,
    token: str = "",
) -> Result:
    from shop.common.v1 import common_pb2
    from shop.order.v1 import order_pb2 as pb

    address = common_pb2.Address(
        recipient_name="Ada", line1="1 Main St", city="Lyon", postal_code="69001",
        country_code="FR",
    )  # fmt: skip
    lat: list[float] = []
    errors = 0
    first = ""
    issued = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, first, issued
        while issued < calls and time.perf_counter() < end:
            issued += 1
            req = pb.PlaceOrderRequest(
                idempotency_key=f"ab-{uuid.uuid4().hex}",
                user_id=user_id,
                lines=[pb.LineItem(product_id=product_ids[issued % len(product_ids)], quantity=1)],
                shipping_address=address,
            )
            t = time.perf_counter()
            try:
                if token:
                    md = {"authorization": f"Bearer {token}"}
                    await side.shopper_stub.PlaceOrder(req, timeout=10, metadata=md)
                else:
                    await side.stub.PlaceOrder(req, timeout=10)
                lat.append(time.perf_counter() - t)
            except Exception as exc:
                errors += 1
                first = first or repr(exc)[:200]

    before = cpu_by_part(side)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res = Result.from_samples(lat, errors, time.perf_counter() - start, first)
    after = cpu_by_part(side)
    if res.calls:
        res.extra["cpu_ms_per_call"] = {
            p: (after[p] - before.get(p, 0.0)) / res.calls * 1000 for p in after
        }
    return res


def summarize(results: dict[str, list[Result]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in results.items():
        out[name] = {
            "calls": sum(r.calls for r in rs),
            "errors": sum(r.errors for r in rs),
            "p50_ms": median_range((r.p50_ms for r in rs), 2),
            "p99_ms": median_range((r.p99_ms for r in rs), 2),
            "mean_ms": median_range((r.mean_ms for r in rs), 2),
            "per_s": median_range((r.per_s for r in rs), 1),
        }
        cpu = [r.extra.get("cpu_ms_per_call", {}) for r in rs]
        parts = sorted({p for c in cpu for p in c})
        out[name]["cpu_ms_per_call"] = {
            p: median_range((c.get(p, 0.0) for c in cpu), 3) for p in parts
        }
        out[name]["cpu_ms_per_call_total"] = median_range((sum(c.values()) for c in cpu), 3)
    base, new = results["base"], results["new"]
    out["ratio_cpu_per_call_base_over_new"] = median_range(
        sum(b.extra.get("cpu_ms_per_call", {}).values())
        / max(1e-9, sum(n.extra.get("cpu_ms_per_call", {}).values()))
        for b, n in zip(base, new, strict=True)
    )
    for metric in ("p50_ms", "p99_ms", "mean_ms"):
        out[f"ratio_{metric}_base_over_new"] = median_range(
            getattr(b, metric) / getattr(n, metric) for b, n in zip(base, new, strict=True)
        )
    out["ratio_per_s_new_over_base"] = median_range(
        n.per_s / b.per_s for b, n in zip(base, new, strict=True)
    )
    return out


async def run(args: argparse.Namespace, base_tree: Path) -> dict[str, Any]:
    product_base = Path(args.product_worktree) if args.product_worktree else None
    sides = {
        "base": Side(
            "base", base_tree, args.base_mongo, args.base_s2s, product_base, args.base_env
        ),
        "new": Side(
            "new", ROOT, args.new_mongo, args.new_s2s, ROOT if product_base else None, args.new_env
        ),
    }
    try:
        for s in sides.values():
            s.start()
        for s in sides.values():
            await s.connect()
        user_id, product_ids = await fixtures()
        token = (
            await shopper_token(user_id, f"ab-{FIXTURE_TAG}@example.com") if args.as_shopper else ""
        )
        if args.seed:
            for s in sides.values():
                await seed(s, args.seed)
        if args.twins != "none":
            from stack.ferretdb import twin_indexes

            for name in ("new", "base") if args.twins == "both" else (args.twins,):
                if not twin_indexes([sides[name].database]):
                    raise BenchFailed(f"no FerretDB index to twin in side {name}'s database")
        for s in sides.values():  # warm both (connections, indexes, JIT-free but caches)
            r = await place_round(s, user_id, product_ids, 2, 20, 10, token)
            r.require_no_errors(f"warm-up {s.name}")
        cells: dict[int, dict[str, list[Result]]] = {}
        for c in args.concurrency:
            cells[c] = {"base": [], "new": []}
            for i in range(args.rounds):
                order = ("base", "new") if i % 2 == 0 else ("new", "base")
                for name in order:
                    r = await place_round(
                        sides[name], user_id, product_ids, c, args.calls, args.seconds, token
                    )
                    r.require_no_errors(f"{name} c={c} round {i}")
                    cells[c][name].append(r)
        return {str(c): summarize(v) for c, v in cells.items()}
    finally:
        for s in sides.values():
            await s.stop()


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--change", required=True, help="entry name in the results file")
    p.add_argument("--base", default="", help="git revision for side base (default: this tree)")
    p.add_argument("--base-mongo", default=MONGO)
    p.add_argument("--new-mongo", default=MONGO)
    p.add_argument("--note", default="")
    p.add_argument("--seed", type=int, default=0, help="orders put in each side's database")
    p.add_argument("--twins", choices=("none", "new", "base", "both"), default="none")
    p.add_argument("--base-s2s", choices=sorted(S2S), default="direct")
    p.add_argument("--new-s2s", choices=sorted(S2S), default="direct")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--calls", type=int, default=150, help="per side, round and concurrency")
    p.add_argument("--seconds", type=float, default=20, help="cap per side and round")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument(
        "--product-base",
        default="",
        help="git revision: each side gets a product server of its own, side base from this "
        "revision, side new from the working tree (both order servers: the working tree)",
    )
    p.add_argument(
        "--as-shopper",
        action="store_true",
        help="PlaceOrder with the shopper's own access token (as the storefront does), not "
        "as the platform",
    )
    for side in ("base", "new"):
        p.add_argument(
            f"--{side}-env",
            type=_env_pair,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"an environment variable of side {side}'s order server (repeatable)",
        )
    args = p.parse_args()
    args.base_env, args.new_env = dict(args.base_env), dict(args.new_env)
    args.product_worktree = ""
    for url in (args.base_mongo, args.new_mongo):
        if "127.0.0.1" not in url:
            raise BenchFailed("benchmarks only talk to 127.0.0.1")
    worktree = Path(f"/tmp/order-ab-{uuid.uuid4().hex[:8]}") if args.base else None
    if worktree is not None:
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), args.base],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    product_tree = Path(f"/tmp/product-ab-{uuid.uuid4().hex[:8]}") if args.product_base else None
    if product_tree is not None:
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(product_tree), args.product_base],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        args.product_worktree = str(product_tree)
    try:
        cells = run_main(run(args, worktree or ROOT))
    finally:
        for tree in (worktree, product_tree):
            if tree is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)],
                    cwd=ROOT, check=False, capture_output=True,
                )  # fmt: skip
    head = git_head()
    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": args.base or "working tree",
        "new": f"working tree on {head}",
        "product": (
            {"base": args.product_base, "new": f"working tree on {head}"}
            if args.product_base
            else "the stack's"
        ),
        "base_mongo": args.base_mongo,
        "new_mongo": args.new_mongo,
        "note": args.note,
        "settings": {
            "seed_orders": args.seed,
            "gin_twins": args.twins,
            "s2s": {"base": args.base_s2s, "new": args.new_s2s},
            "rounds": args.rounds,
            "calls": args.calls,
            "seconds_cap": args.seconds,
            "concurrency": args.concurrency,
            "transport": "direct gRPC, loopback",
            "caller": "the shopper's token" if args.as_shopper else "the platform (demo admin)",
            "env": {"base": args.base_env, "new": args.new_env},
        },
        "machine": machine(),
        "by_concurrency": cells,
    }
    record_entry("order_place_ab", "changes", args.change, entry)
    for c, cell in cells.items():
        print(
            f"c={c}: p50 base {cell['base']['p50_ms']['median']}"
            f" new {cell['new']['p50_ms']['median']}"
            f" | ratio base/new p50 {cell['ratio_p50_ms_base_over_new']['median']}"
            f" p99 {cell['ratio_p99_ms_base_over_new']['median']}"
            f" mean {cell['ratio_mean_ms_base_over_new']['median']}"
            f" | calls/s new/base {cell['ratio_per_s_new_over_base']['median']}"
            f" | CPU/call base/new {cell['ratio_cpu_per_call_base_over_new']['median']}"
            f" ({cell['base']['cpu_ms_per_call_total']['median']} vs"
            f" {cell['new']['cpu_ms_per_call_total']['median']} ms)"
        )


if __name__ == "__main__":
    main()
