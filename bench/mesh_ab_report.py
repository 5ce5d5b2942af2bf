"""bench/README.md sections of the gateway A/Bs kept by name (bench/mesh_shop_ab.py,
bench/mesh_internal_ab.py) and of bench/mesh_call_cost.py: one table per run, medians
(min-max) over rounds, ratios taken within a round."""

from __future__ import annotations

from typing import Any

from bench.report_sections import _machine


def _mr(r: Any, digits: int = 1) -> str:
    if not isinstance(r, dict) or "median" not in r:
        return "" if r is None else str(r)
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def _table(summary: dict[str, Any]) -> list[str]:
    """One row per side or ratio, one column per figure (ranges as median (min-max))."""
    cols: list[str] = []
    for row in summary.values():
        cols += [k for k in row if k not in cols]
    out = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in summary.items():
        ratio = "_vs_" in name or ("/" in name and " " in name)
        cells = [_mr(row.get(c), 3 if ratio else 1) for c in cols]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def _run(title: str, run: dict[str, Any]) -> list[str]:
    sides = run.get("sides") or {"side": run.get("source", "")}
    head = [
        f"**{title}** ({run.get('when') or run.get('measured_at', '')}; commit "
        f"{run.get('commit', '?')}; load at end {run.get('load_at_end', '?')})",
        "",
    ]
    if run.get("note"):
        head += [str(run["note"]), ""]
    if run.get("what"):
        head += [str(run["what"]) + ".", ""]
    head += ["Sides: " + "; ".join(f"{k} = {v}" for k, v in sides.items()), ""]
    if run.get("steps_repeated"):
        head += [f"Steps repeated (a shared service restarted): {len(run['steps_repeated'])}", ""]
    return [*head, *_table(run["summary"]), ""]


def report(name: str, r: dict[str, Any]) -> list[str]:
    out = [f"## {name}", ""]
    if r.get("machine"):
        out += [_machine(r), ""]
    doc = {
        "mesh_shop_ab": "The shop mix (bench/shop_load.py, one step) through private gateway "
        "sides in front of the stack's services: Envoy and NGINX CPU per shop request.",
        "mesh_internal_ab": "Envoy's token checks between two generated configs on one call "
        "(internal ReserveStock as order, or an edge REST user call with a shopper's token).",
        "mesh_call_cost": "Envoy and NGINX CPU per call of the shop's reads, REST vs gRPC-Web.",
    }
    out += [doc.get(name, ""), ""]
    if "changes" in r:
        for key, run in r["changes"].items():
            out += _run(f"change `{key}`", run)
    else:
        out += _run("latest run", r)
    return out
