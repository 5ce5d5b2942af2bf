"""bench/mesh_overhead.py's results as figures: the figures kept per point, the median and
ratio per side over the rounds, the table it prints and the bench/README.md section and
headline rows of its A/B layout.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench.common import (
    fmt_range,
    median_range,
)

NAME = "mesh_overhead"
FIGURES = ("calls_per_s", "p50_ms", "p99_ms", "envoy_us", "nginx_us", "gateway_us",
           "upstream_us", "client_us", "core0_busy", "core1_busy")  # fmt: skip
AB_FIGURES = ("calls_per_s", "envoy_us", "nginx_us", "gateway_us", "upstream_us")


# ------------------------------------------------------------------ summaries


def _ratio(a: float | None, b: float | None) -> float:
    return a / b if a and b else float("nan")


DIRECT_FIGURES = ("calls_per_s", "p50_ms", "upstream_us", "client_us", "core0_busy", "core1_busy")


def summarize(rounds: list[dict[str, Any]], side_names: list[str]) -> dict[str, Any]:
    """Per upstream and path: each side's figures and ratio vs direct, and (with two or more
    sides) every other side against the first, as medians (min-max) of per-round values."""
    out: dict[str, Any] = {}
    key = lambda r: (r["upstream"], r["path"])  # noqa: E731
    for (upstream, path), group in itertools.groupby(sorted(rounds, key=key), key=key):
        rows = list(group)
        cell: dict[str, Any] = {
            "rounds": len(rows),
            "direct": {f: median_range(r["direct"][f] for r in rows) for f in DIRECT_FIGURES},
        }
        for s in side_names:
            cell[s] = {f: median_range(r[s].get(f, float("nan")) for r in rows) for f in FIGURES}
            cell[s]["ratio_vs_direct"] = median_range(
                _ratio(r[s]["calls_per_s"], r["direct"]["calls_per_s"]) for r in rows
            )
        base = side_names[0]
        for s in side_names[1:]:
            cell[f"{s}_vs_{base}"] = {
                f: median_range(_ratio(r[s].get(f), r[base].get(f)) for r in rows)
                for f in AB_FIGURES
            }
        out.setdefault(upstream, {})[path] = cell
    return out


def _busy(c: dict[str, Any]) -> str:
    if "core0_busy" not in c:
        return ""
    return f"{c['core0_busy']['median']:.2f} / {c['core1_busy']['median']:.2f}"


def table(run: dict[str, Any]) -> str:
    """Markdown: per upstream, path and side the ratio vs direct and the CPU per call, and the
    A/B ratios when the run had two sides."""
    sides = list(run["sides"])
    lines = [
        "| upstream | path | side | calls/s | x of direct | Envoy µs/call | NGINX µs/call "
        "| upstream µs/call | client µs/call | core 0 / 1 busy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ab = []
    for upstream, paths in run["summary"].items():
        for path, cell in paths.items():
            d = cell["direct"]
            lines.append(
                f"| {upstream} | {path} | direct | {fmt_range(d['calls_per_s'], 0)} | 1 | | | "
                f"{fmt_range(d['upstream_us'], 0)} | {fmt_range(d['client_us'], 0)} | "
                f"{_busy(d)} |"
            )
            for s in sides:
                c = cell[s]
                nginx_us = fmt_range(c["nginx_us"], 0) if c["nginx_us"]["n"] else ""
                lines.append(
                    f"| {upstream} | {path} | {s} | {fmt_range(c['calls_per_s'], 0)} | "
                    f"{fmt_range(c['ratio_vs_direct'])} | {fmt_range(c['envoy_us'], 0)} | "
                    f"{nginx_us} | {fmt_range(c['upstream_us'], 0)} | "
                    f"{fmt_range(c['client_us'], 0)} | {_busy(c)} |"
                )
            for s in sides[1:]:
                r = cell[f"{s}_vs_{sides[0]}"]
                ab.append(
                    f"| {upstream} | {path} | {s} | {fmt_range(r['calls_per_s'])} | "
                    f"{fmt_range(r['envoy_us'])} | "
                    f"{fmt_range(r['nginx_us']) if r['nginx_us']['n'] else ''} | "
                    f"{fmt_range(r['gateway_us'])} | {fmt_range(r['upstream_us'])} |"
                )
    if ab:
        lines += [
            "",
            f"Each side / {sides[0]} (per-round ratios; CPU below 1 = cheaper):",
            "",
            "| upstream | path | side | calls/s | Envoy CPU/call | NGINX CPU/call | "
            "Envoy+NGINX CPU/call | upstream CPU/call |",
            "|---|---|---|---:|---:|---:|---:|---:|",
            *ab,
        ]
    return "\n".join(lines)


def headline(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Summary rows for bench/README.md: the latest run's last side, real service behind."""
    run = r.get("latest") or {}
    sides = list(run.get("sides", {}))
    paths = run.get("summary", {}).get("product_service", {})
    if not sides:
        return []
    side = sides[-1]
    rows = []
    for path, cell in paths.items():
        c = cell[side]
        rows.append((
            f"GetProduct via {path} ({side}: {run['sides'][side]['source']})",
            f"x{fmt_range(c['ratio_vs_direct'])} of direct",
            f"Envoy {fmt_range(c['envoy_us'], 0)} + NGINX "
            f"{fmt_range(c['nginx_us'], 0) if c['nginx_us']['n'] else '-'} µs CPU/call",
        ))  # fmt: skip
    return rows


def report(r: dict[str, Any]) -> list[str]:
    """bench/README.md section: the latest run and every kept A/B."""
    out = [f"## {NAME}: the gateway's cost per GetProduct, and A/Bs of its generated config", ""]
    out += [r.get("what", ""), "", r.get("setup", ""), ""]
    runs = [("latest run", r["latest"])] if r.get("latest") else []
    runs += [(f"change `{k}`", v) for k, v in r.get("changes", {}).items()]
    for title, run in runs:
        sides = ", ".join(
            f"{n} = {s['source']} (Envoy --concurrency {s['envoy_concurrency']})"
            for n, s in run["sides"].items()
        )
        st = run["settings"]
        out += [
            f"**{title}** ({run['when']}; {sides}; {st['rounds']} rounds x "
            f"{st['seconds_per_point']} s, C={st['concurrency']}; "
            f"load at end {run['load_average_at_end'][0]})",
            "",
        ]
        if run.get("note"):
            out += [run["note"], ""]
        out += [table(run), ""]
    return out
