"""Same-run A/B of one runtime change: our code path served by the working tree vs by a base
git revision (a worktree under /tmp), with grpc.aio as the reference, interleaved rounds.

    python -m bench.runtime_hot_path --change NAME --base REV
        [--configs runtime_mem,grpcio] [--concurrency 16,64] [--rounds 3] [--seconds 2]

`--configs` names the new side (runtime_mem and/or service_db) plus references; each of
runtime_mem / service_db gets its `_base` twin from REV. Adds (or replaces) the entry NAME in
bench/results/runtime_hot_path.json: per RPC and concurrency, calls/s ratio new/base, server
CPU-cost ratio base/new (>1 = cheaper), and both sides' ratio vs grpc.aio, each the median
(min-max) of ratios computed within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, fmt_range, machine
from bench.hot_rpc import bench
from shop.topology import SERVICES

NAME = "runtime_hot_path"


def entry(change: str, base: str, result: dict[str, Any]) -> dict[str, Any]:
    ref = result["reference"]
    rows = []
    for cell in result["cells"]:
        name = cell["config"]
        if f"ratio_vs_{name}_base" not in cell:
            continue
        base_cell = next(
            c for c in result["cells"]
            if (c["config"], c["rpc"], c["concurrency"]) ==
            (f"{name}_base", cell["rpc"], cell["concurrency"])
        )  # fmt: skip
        rows.append({
            "rpc": cell["rpc"], "concurrency": cell["concurrency"], "config": name,
            "ratio_new_vs_base": cell[f"ratio_vs_{name}_base"],
            "cpu_ratio_new_vs_base": cell[f"cpu_ratio_vs_{name}_base"],
            f"new_ratio_vs_{ref}": cell.get(f"ratio_vs_{ref}"),
            f"base_ratio_vs_{ref}": base_cell.get(f"ratio_vs_{ref}"),
            "new_us_cpu_per_call": cell["server_cpu_us_per_call"],
            "base_us_cpu_per_call": base_cell["server_cpu_us_per_call"],
        })  # fmt: skip
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "change": change,
        "base": base,
        "measured_on_top_of": head,
        "machine": machine(),
        "settings": result["settings"],
        "reference": ref,
        "rows": rows,
    }


def table(e: dict[str, Any]) -> str:
    ref = e["reference"]
    lines = [
        f"| RPC | C | config | calls/s new/base | CPU-cost base/new | new vs {ref} | "
        f"base vs {ref} | µs CPU/call new | base |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in e["rows"]:
        lines.append(
            f"| {r['rpc']} | {r['concurrency']} | {r['config']} | "
            f"{fmt_range(r['ratio_new_vs_base'])} | {fmt_range(r['cpu_ratio_new_vs_base'])} | "
            f"{fmt_range(r[f'new_ratio_vs_{ref}'])} | {fmt_range(r[f'base_ratio_vs_{ref}'])} | "
            f"{fmt_range(r['new_us_cpu_per_call'], 0)} | "
            f"{fmt_range(r['base_us_cpu_per_call'], 0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--change", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--configs", default="runtime_mem,grpcio")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--catalog-port", type=int, default=SERVICES["product"].port)
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    for name in ("runtime_mem", "service_db"):
        if name in configs:
            configs.insert(configs.index(name) + 1, f"{name}_base")
    ns = argparse.Namespace(
        configs=configs, concurrency=[int(c) for c in args.concurrency.split(",")],
        rounds=args.rounds, seconds=args.seconds, profile=False, base=args.base,
        catalog_port=args.catalog_port,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="runtime-ab-") as tmp:
        result = asyncio.run(bench(ns, Path(tmp)))
    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {"benchmark": NAME, "changes": []}
    data["what"] = __doc__.split("\n\n")[0].replace("\n", " ")
    e = entry(args.change, args.base, result)
    data["changes"] = [c for c in data["changes"] if c["change"] != args.change] + [e]
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(table(e))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
