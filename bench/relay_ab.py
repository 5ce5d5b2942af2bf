"""Same-run A/B of the outbox relay: how fast a relay drains a backlog of N order events to
Kafka, the code of a base git revision (a worktree under /tmp) against the working tree (or
a `--new` revision), interleaved over rounds on the stack's FerretDB (or, with
`--private-ferretdb`, one of the stack's build started for the run on its own PostgreSQL
database, whose CPU is then this bench's alone), Kafka and registry.

Each side runs in its own process with its tree's code: it seeds N confirmed orders in a
scratch database through its own repository (add + save, 32 at a time: the documents its
service would write), then a fresh relay (its tree's defaults) drains them to a scratch
topic with `run_once()` until nothing is left; the side checks that every event was
acknowledged and nothing is left pending. Reported per side: events/s of the drain, and CPU
per event of the relay process, FerretDB and PostgreSQL's ferretdb backends and Kafka over
the drain (from /proc; the shared machine's other work is not in these processes).

    python -m bench.relay_ab --change NAME --base REV [--new REV] [--events 2000]
                             [--rounds 3] [--mode store|memory] [--seed repo|bulk]
                             [--private-ferretdb] [--bound-s 900]

The entry NAME in bench/results/relay_ab.json gets both sides' events/s and CPU, and the
per-round ratio new/base, median (min-max). A side that exceeds --bound-s fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, BenchFailed, git_head, machine, median_range, record_entry

MONGO = "mongodb://127.0.0.1:27017/"
BOOTSTRAP = "127.0.0.1:9092"
REGISTRY = "http://127.0.0.1:8085"

# The side's driver: runs with PYTHONPATH set to one tree, so it must only use what both the
# base and the new code have (MongoOrders.add/save, OutboxRelay(repo, producer, topic=...),
# run_once, EventProducer, AvroSerde).
SIDE = (Path(__file__).parent / "relay_side_driver.py").read_text()


def scratch_topic(partitions: int = 6) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench.relay.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=20)
    time.sleep(2)  # let the partitions get their leader before the first side sends
    return topic


def drop_topic(topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept: its futures need it alive
    admin.delete_topics([topic])[topic].result(timeout=20)
    for suffix in ("", "?permanent=true"):
        req = urllib.request.Request(
            f"{REGISTRY}/subjects/{topic}-shop.events.v1.OrderPlaced{suffix}", method="DELETE"
        )
        with contextlib.suppress(Exception):
            urllib.request.urlopen(req, timeout=5)


@contextlib.contextmanager
def private_ferretdb() -> Any:
    """A FerretDB of the stack's build on a free port, over its own PostgreSQL database on the
    stack's primary: its CPU is this bench's alone (the stack's FerretDB also serves the
    other engineers' tests). Yields the environment the sides read; removed afterwards."""
    from pymongo import MongoClient

    from bench.common import free_port
    from stack import postgres
    from stack.ferretdb import BINARY

    pg_db = f"ferretdb_relay_ab_{uuid.uuid4().hex[:6]}"
    postgres.psql(f"CREATE DATABASE {pg_db} OWNER {postgres.APP_ROLE}")
    port, debug, state = free_port(), free_port(), Path(f"/tmp/{pg_db}")  # debug: pprof
    state.mkdir()
    proc = subprocess.Popen(
        [str(BINARY), f"--listen-addr=127.0.0.1:{port}", "--handler=postgresql",
         f"--postgresql-url={postgres.dsn(pg_db, driver='postgres')}?pool_max_conns=100",
         f"--state-dir={state}", "--telemetry=disable", "--log-level=warn",
         f"--debug-addr=127.0.0.1:{debug}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"mongodb://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                with MongoClient(url, serverSelectionTimeoutMS=500) as c:
                    c.admin.command("ping")
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise BenchFailed("the private FerretDB did not answer")
        print(f"private FerretDB on :{port} (pprof on :{debug})", flush=True)
        yield {"RELAY_AB_MONGO": url, "RELAY_AB_PG_DB": pg_db, "RELAY_AB_FERRET": f":{port}"}
    finally:
        proc.terminate()
        proc.wait(10)
        postgres.psql(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
        subprocess.run(["rm", "-rf", str(state)], check=False)


def run_side(
    tree: Path,
    events: int,
    topic: str,
    bound_s: float,
    mode: str,
    seed: str,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    out = Path(f"/tmp/relay_ab_{uuid.uuid4().hex[:8]}.json")
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": f"{tree}:{tree / 'gen' / 'python'}"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SIDE, str(events), topic, str(out), mode, seed],
            cwd=tree, env=env, timeout=bound_s, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BenchFailed(f"side in {tree} failed: {proc.stderr[-1500:]}")
        got = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    if got["events"] != events or got["left"]:
        raise BenchFailed(f"side in {tree}: {got['events']} of {events} events, {got['left']} left")
    got["events_per_s"] = got["events"] / got["seconds"]
    got["cpu_us_per_event"] = {k: v / events * 1e6 for k, v in got["cpu_s"].items()}
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--change", required=True)
    ap.add_argument("--base", required=True, help="git revision of side base")
    ap.add_argument("--new", default="", help="git revision of side new (default: working tree)")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bound-s", type=float, default=900)
    ap.add_argument("--note", default="")
    ap.add_argument(
        "--sides", type=lambda v: v.split(","), default=["base", "new"], help="base,new or new"
    )
    ap.add_argument(
        "--seed",
        choices=("repo", "bulk"),
        default="repo",
        help="repo: orders placed through each side's repository; bulk (new code only): "
        "the same documents inserted in bulk, as if placed at 250/s, and handed to the relay",
    )
    ap.add_argument(
        "--mode",
        choices=("store", "memory"),
        default="store",
        help="store: a fresh relay drains what is stored (a restart); memory: the writing "
        "process's relay drains what it was handed during an outage (sides without that "
        "path drain from the store)",
    )
    ap.add_argument(
        "--private-ferretdb",
        action="store_true",
        help="both sides on a FerretDB of their own (the stack's build, its own PostgreSQL "
        "database): FerretDB's CPU per event without the other work the stack's one serves",
    )
    args = ap.parse_args()
    worktree = Path(f"/tmp/relay-ab-{uuid.uuid4().hex[:8]}")
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), args.base],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    new_tree = ROOT
    if args.new:  # a commit, not the shared working tree (other engineers' edits in it)
        new_tree = Path(f"{worktree}-new")
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(new_tree), args.new],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    topic = scratch_topic()
    rounds: list[dict[str, Any]] = []
    stack = contextlib.ExitStack()
    try:
        extra = stack.enter_context(private_ferretdb()) if args.private_ferretdb else {}
        for r in range(args.rounds):
            order = [("base", worktree), ("new", new_tree)]
            if r % 2:
                order.reverse()  # a warming cache or a neighbour's burst favours neither
            got = {
                side: run_side(tree, args.events, topic, args.bound_s, args.mode, args.seed, extra)
                for side, tree in order
                if side in args.sides
            }
            if "base" in got:
                got["ratio"] = got["new"]["events_per_s"] / got["base"]["events_per_s"]
            print(f"round {r + 1}: " + ", ".join(
                f"{k} {v['events_per_s']:.1f} ev/s" for k, v in got.items() if k != "ratio"
            ) + (f", x{got['ratio']:.2f}" if "ratio" in got else ""), flush=True)  # fmt: skip
            rounds.append(got)
    finally:
        stack.close()
        drop_topic(topic)
        for tree in {worktree, new_tree} - {ROOT}:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=ROOT, check=False, capture_output=True,
            )  # fmt: skip

    def cpu(side: str) -> dict[str, Any]:
        if side not in rounds[0]:
            return {}
        parts = rounds[0][side]["cpu_us_per_event"]
        return {p: median_range((r[side]["cpu_us_per_event"][p] for r in rounds), 1) for p in parts}

    def rate(side: str) -> dict[str, float] | None:
        return (
            median_range((r[side]["events_per_s"] for r in rounds), 1)
            if side in rounds[0]
            else None
        )

    head = git_head()
    entry = {
        "what": f"relay draining a backlog of {args.events} order events to a 6-partition "
        f"scratch topic: base {args.base} vs "
        + (args.new if args.new else f"the working tree on {head}")
        + ", each side seeding its "
        + (
            "own scratch database through its own repository, then "
            if args.seed == "repo"
            else "scratch database with its own documents in bulk (as if placed at 250/s), then "
        )
        + (
            "a fresh relay with its tree's defaults drains the store (a restart)"
            if args.mode == "store"
            else "the relay of the writing process, which held its writes while Kafka was "
            "away, drains them (a side without that path: a fresh relay on the store)"
        )
        + (
            "; both sides on a FerretDB of the stack's build started for the run (its own "
            "process and PostgreSQL database)"
            if args.private_ferretdb
            else ""
        ),
        "new": args.new or "working tree",
        "mode": args.mode,
        "seed": args.seed,
        "ferretdb": "private (its own process and PostgreSQL database)"
        if args.private_ferretdb
        else "the stack's",
        "note": args.note,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "events_per_s_base": rate("base"),
        "events_per_s_new": rate("new"),
        **(
            {"ratio_new_vs_base": median_range(r["ratio"] for r in rounds)}
            if "base" in args.sides
            else {}
        ),
        "cpu_us_per_event_base": cpu("base"),
        "cpu_us_per_event_new": cpu("new"),
        "rounds": rounds,
    }
    path = record_entry("relay_ab", "changes", args.change, entry)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
