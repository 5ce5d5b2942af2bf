"""Cart write path A/B: the cart's use cases and PostgreSQL adapter of a base git revision
(a worktree under /tmp) against a new revision (default HEAD, also a worktree: other
engineers' uncommitted edits stay out), same run, alternating rounds, each side a fresh
process of its own tree (bench/cart_side_driver.py) on the stack's cart database.

Per side and phase (AddItem C=1 over 50 carts, GetCart C=1, AddItem from 8 callers on 2
carts): the service side's CPU per operation (use case, adapter, asyncpg, spans), its
PostgreSQL backends' CPU, latency p50/p99; new/base ratios per round, then median
(min-max) over rounds.

    python -m bench.cart_write_ab --base a80ac1e~1 [--new HEAD] [--ops 1000] [--rounds 4]
Writes bench/results/cart_write_ab.json (a named entry per --name).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, BenchFailed, machine, median_range, record_entry

SIDE = (Path(__file__).parent / "cart_side_driver.py").read_text()
PHASES = ("add", "get", "contended")
KEYS = ("service_us", "store_us", "total_us", "ops_per_s", "p50_ms", "p99_ms")


def worktree(rev: str) -> Path:
    tree = Path(f"/tmp/cart-ab-{uuid.uuid4().hex[:8]}")
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return tree


def run_side(tree: Path, side: str, ops: int) -> dict[str, Any]:
    out = Path(f"/tmp/cart_ab_{uuid.uuid4().hex[:8]}.json")
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'gen' / 'python'}", "SHOPMESH_ENV": "dev"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SIDE, str(ops), str(out), f"cart-write-ab-{side}", side],
            cwd=tree, env=env, timeout=600, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BenchFailed(f"side {side} in {tree} failed: {proc.stderr[-1500:]}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def rev(r: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", r], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--name", default="compare_and_set")
    args = ap.parse_args()
    trees = {"base": worktree(args.base), "new": worktree(args.new)}
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
            row: dict[str, Any] = {"round": r, "loadavg_1m": round(os.getloadavg()[0], 2)}
            for side in order:
                row[side] = run_side(trees[side], side, args.ops)
            rounds.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=ROOT, check=False, capture_output=True,
            )  # fmt: skip
    summary: dict[str, Any] = {}
    for ph in PHASES:
        for k in ("service_us", "total_us", "p99_ms"):
            summary[f"{ph}.{k}_new_over_base"] = median_range(
                r["new"][ph][k] / max(r["base"][ph][k], 1e-9) for r in rounds
            )
        for side in ("base", "new"):
            for k in KEYS:
                summary[f"{ph}.{side}.{k}"] = median_range(r[side][ph][k] for r in rounds)
    entry = {
        "what": "cart use cases + PostgreSQL adapter per operation, base vs new revision, "
        "fresh process per side and round, alternating; add/get C=1 over 50 carts, "
        "contended = AddItem from 8 callers on 2 carts",
        "base": rev(args.base),
        "new": rev(args.new),
        "params": {"ops": args.ops, "rounds": args.rounds},
        "summary": summary,
        "rounds": rounds,
        "machine": machine(),
    }
    print(json.dumps(summary, indent=1))
    print(record_entry("cart_write_ab", "runs", args.name, entry))


if __name__ == "__main__":
    main()
