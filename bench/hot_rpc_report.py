"""bench/hot_rpc.py's results as figures: medians and ratios per cell, the profile groups,
the findings and the table bench/README.md shows, and the profiled server runner.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    fmt_range,
    median_range,
)


def summarize(
    points: list[dict[str, Any]],
    configs: list[str],
    args: argparse.Namespace,
    skipped: dict[str, str],
    profiles: dict[str, Any],
) -> dict[str, Any]:
    ref = "grpcio" if "grpcio" in configs else configs[0]
    cells: list[dict[str, Any]] = []
    for rpc in ("GetProduct", "ListProducts"):
        for c in args.concurrency:
            for name in configs:
                mine = [p for p in points if (p["config"], p["rpc"], p["concurrency"]) ==
                        (name, rpc, c)]  # fmt: skip
                ratios, ab, cost = [], [], []
                for p in mine:
                    base = next(
                        q for q in points
                        if (q["config"], q["rpc"], q["concurrency"], q["round"]) ==
                        (ref, rpc, c, p["round"])
                    )  # fmt: skip
                    ratios.append(p["per_s"] / base["per_s"])
                    cost.append(base["server_cpu_us_per_call"] / p["server_cpu_us_per_call"])
                    for other in (f"{name}_old", f"{name}_base"):
                        if other not in configs:
                            continue
                        old = next(
                            q for q in points
                            if (q["config"], q["rpc"], q["concurrency"], q["round"]) ==
                            (other, rpc, c, p["round"])
                        )  # fmt: skip
                        ab.append(
                            (
                                other,
                                p["per_s"] / old["per_s"],
                                old["server_cpu_us_per_call"] / p["server_cpu_us_per_call"],
                            )
                        )
                cell = {
                    "rpc": rpc, "concurrency": c, "config": name,
                    "per_s": median_range((p["per_s"] for p in mine), 1),
                    "p50_ms": median_range(p["p50_ms"] for p in mine),
                    "p99_ms": median_range(p["p99_ms"] for p in mine),
                    "server_cpu": median_range((p["server_cpu"] for p in mine), 2),
                    "server_cpu_us_per_call": median_range(
                        (p["server_cpu_us_per_call"] for p in mine), 1),
                    f"ratio_vs_{ref}": median_range(ratios),
                    f"cpu_ratio_vs_{ref}": median_range(cost),
                }  # fmt: skip
                for other in dict.fromkeys(o for o, _, _ in ab):
                    cell[f"ratio_vs_{other}"] = median_range(r for o, r, _ in ab if o == other)
                    cell[f"cpu_ratio_vs_{other}"] = median_range(r for o, _, r in ab if o == other)
                cells.append(cell)
    return {
        "what": "GetProduct (rotating over 20 ids) and ListProducts(page_size=20); server "
        "pinned to core 0, one grpc.aio client on core 1; per cell median (min-max) of the "
        "rounds, ratios computed within a round. cpu_ratio = reference's server CPU per call "
        "/ this config's (>1 = cheaper); it excludes PostgreSQL's CPU for service_db*",
        "reference": ref,
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "configs": configs,
        },
        "versions_alt": {"betterproto": "2.0.0b7", "betterproto2": "0.10.0 (compiler 0.10.1)"},
        "skipped": skipped,
        "cells": cells,
        "points": points,
        "profiles": profiles,
    }


# Which part of the stack a profiled frame belongs to (first match on its short path).
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP/2 transport (grpclib, h2, hpack, hyperframe)", ("grpclib/", "h2/", "hpack/",
                                                           "hyperframe/")),
    ("OpenTelemetry", ("opentelemetry/",)),
    ("logging", ("logging/", "services/runtime/logs")),
    ("prometheus_client", ("prometheus_client/",)),
    ("our runtime and handlers", ("services/",)),
    ("database (SQLAlchemy, asyncpg)", ("sqlalchemy/", "asyncpg/")),
    ("protobuf", ("google/protobuf/",)),
    ("C builtins", ("<built-in>",)),
)  # fmt: skip


def profile_groups(prof: dict[str, Any]) -> dict[str, float]:
    """Share of the sampled self time per stack part, over the profile's top frames."""
    out: dict[str, float] = {}
    for t in prof.get("top_self", []):
        frame = t["frame"]
        group = next((g for g, pre in PROFILE_GROUPS if frame.startswith(pre)), "other")
        out[group] = out.get(group, 0.0) + t["share"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def findings(result: dict[str, Any]) -> list[str]:
    """What the cells and profiles of one run say, derived from them (never hand-written,
    so they cannot go stale against the table above them)."""
    ref = result["reference"]
    cells = result["cells"]

    def span(config: str, key: str, rpc: str | None = None) -> tuple[float, float] | None:
        vals = [c[key]["median"] for c in cells
                if c["config"] == config and (rpc is None or c["rpc"] == rpc)]  # fmt: skip
        return (min(vals), max(vals)) if vals else None

    def cpu_gap(a: str, b: str) -> tuple[float, float] | None:
        gaps = [
            x["server_cpu_us_per_call"]["median"] - y["server_cpu_us_per_call"]["median"]
            for x in cells if x["config"] == a
            for y in cells
            if y["config"] == b and (y["rpc"], y["concurrency"]) == (x["rpc"], x["concurrency"])
        ]  # fmt: skip
        return (min(gaps), max(gaps)) if gaps else None

    out: list[str] = []
    rt, bare = span("runtime_mem", f"ratio_vs_{ref}"), span("grpclib_upb", f"ratio_vs_{ref}")
    gap = cpu_gap("runtime_mem", "grpclib_upb")
    if rt and bare and gap:
        out.append(
            f"Largest gap: our runtime without a DB (runtime_mem) serves {rt[0]:.2f}-{rt[1]:.2f}x "
            f"the calls/s of {ref}; bare grpclib + upb on the same data {bare[0]:.2f}-"
            f"{bare[1]:.2f}x. The difference is the runtime's per-call work (validation, "
            f"auth hook, span, metrics, access log): {gap[0]:.0f}-{gap[1]:.0f} us of server "
            "CPU per call more than bare grpclib."
        )
    steps = [(c, label) for c, label in (
        ("service_db_base", "the code before (--base)"), ("service_db_sqla", "SQLAlchemy Core"),
        ("service_db_nocache", "raw prepared reads, no cache"), ("service_db", "cache on"),
        ("runtime_mem", "no database at all")) if any(x["config"] == c for x in cells)]  # fmt: skip
    step_names = {c for c, _ in steps}
    if "service_db" in step_names and step_names & {"service_db_nocache", "service_db_base"}:
        for rpc in ("GetProduct", "ListProducts"):
            per = []
            for c, label in steps:
                us = [x["server_cpu_us_per_call"]["median"] for x in cells
                      if x["config"] == c and x["rpc"] == rpc]  # fmt: skip
                per.append(f"{label} {min(us):.0f}-{max(us):.0f}")
            out.append(
                f"Catalog read path, {rpc}: product-service CPU per call (us, range over the "
                f"concurrencies): " + "; ".join(per) + "."
            )
    db = cpu_gap("service_db", "runtime_mem")
    if "service_db_nocache" in step_names:
        db = None  # service_db is cached there: the steps above say what the database costs
    if db:
        out.append(
            f"The real database path (service_db) adds {db[0]:.0f}-{db[1]:.0f} us of "
            "product-service CPU per call over runtime_mem (SQLAlchemy Core + asyncpg + the "
            "statement span), PostgreSQL's own CPU not counted."
        )
    upb = span("grpclib_upb", f"ratio_vs_{ref}", "ListProducts")
    for alt in ("betterproto", "betterproto2"):
        g = span(alt, f"ratio_vs_{ref}", "GetProduct")
        lp = span(alt, f"ratio_vs_{ref}", "ListProducts")
        if g and lp and upb:
            verdict = (
                "ARCHITECTURE 3a's choice of upb messages holds"
                if lp[1] < upb[0]
                else "the gap to upb has closed on some cells: revisit ARCHITECTURE 3a"
            )
            out.append(
                f"{alt}: GetProduct {g[0]:.2f}-{g[1]:.2f}x, ListProducts(20) {lp[0]:.2f}-"
                f"{lp[1]:.2f}x of {ref}, against {upb[0]:.2f}-{upb[1]:.2f}x for grpclib + upb "
                f"on ListProducts: {verdict}."
            )
    for name, prof in (result.get("profiles") or {}).items():
        groups = profile_groups(prof)
        if groups:
            parts = ", ".join(f"{g} {s * 100:.0f}%" for g, s in groups.items())
            out.append(
                f"Where {name}'s samples go (self time of its top {len(prof['top_self'])} "
                f"frames, {sum(groups.values()) * 100:.0f}% of all samples): {parts}; the "
                f"call tree is in results/hot_rpc_profile_{name}.txt."
            )
    return out


def table(result: dict[str, Any]) -> str:
    ref = result["reference"]
    lines = [
        f"| RPC | C | config | calls/s | ratio vs {ref} | srv µs CPU/call | CPU-cost ratio "
        f"vs {ref} | p50 ms | p99 ms | srv CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in result["cells"]:
        lines.append(
            f"| {cell['rpc']} | {cell['concurrency']} | {cell['config']} | "
            f"{fmt_range(cell['per_s'], 0)} | {fmt_range(cell[f'ratio_vs_{ref}'])} | "
            f"{fmt_range(cell['server_cpu_us_per_call'], 0)} | "
            f"{fmt_range(cell[f'cpu_ratio_vs_{ref}'])} | "
            f"{fmt_range(cell['p50_ms'])} | {fmt_range(cell['p99_ms'])} | "
            f"{cell['server_cpu']['median']:.2f} |"
        )
    return "\n".join(lines)


# ================================================================== profiling wrapper


def run_profiled(argv: list[str]) -> None:
    """Run `python -m <module> ...` under pyinstrument, profiling only between SIGUSR1 and
    SIGUSR2 (a bounded window: a whole-run session is too big to render), then write the
    text report and the top self-time frames to $BENCH_PROFILE_OUT.{txt,json}."""
    import runpy

    from pyinstrument import Profiler

    out = os.environ["BENCH_PROFILE_OUT"]
    profiler = Profiler(interval=0.001, async_mode="disabled")

    def start(*_: Any) -> None:
        profiler.start()

    def stop(*_: Any) -> None:
        profiler.stop()
        Path(out + ".txt").write_text(
            profiler.output_text(unicode=False, color=False, show_all=False)
        )
        Path(out + ".json").write_text(json.dumps(top_frames(profiler.last_session), indent=1))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


def top_frames(session: Any, n: int = 25) -> dict[str, Any]:
    """Self time by function (file:function), top n, as share of all samples."""
    totals: dict[str, float] = {}
    root = session.root_frame()
    stack = [root]
    while stack:
        fr = stack.pop()
        stack.extend(fr.children)
        key = f"{fr.file_path_short}:{fr.function}"
        totals[key] = totals.get(key, 0.0) + fr.total_self_time
    whole = sum(totals.values()) or 1.0
    # time the loop spent waiting for I/O (epoll/select): the process was idle, not busy
    idle = sum(v for k, v in totals.items() if k.endswith((":select", ":poll", ":run_once")))
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return {
        "duration_s": round(session.duration, 2),
        "sampled_s": round(whole, 3),
        "idle_s": round(idle, 3),
        "top_self": [{"frame": k, "share": round(v / whole, 4)} for k, v in top],
    }
