"""Writes the figures of a reliability run: bench/results/reliability.json keeps the latest
short run (`make test`) and the latest soak run (`make soak`) side by side; the soak run
also regenerates tests/reliability/REPORT.md, the human-readable record."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from tests.reliability.harness import SCALE, Figures

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "reliability.json"
REPORT = Path(__file__).with_name("REPORT.md")


def write(fig: Figures) -> None:
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc["bench"] = "reliability"
    doc[fig.mode] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scale": dataclasses.asdict(SCALE),
        **dataclasses.asdict(fig),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    if fig.mode == "soak":
        REPORT.write_text(render(doc["soak"]))


def _table(rows: list[tuple[object, ...]], head: tuple[str, ...]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(run: dict) -> str:
    o = run.get("orders") or {}
    scale = run.get("scale", {})
    lines = [
        "# Reliability report",
        "",
        f"**{run['mode']} run** of tests/reliability on {run['when']} "
        f"({run['machine']['cpus']} CPUs, Python {run['machine']['python']}; "
        f"{scale.get('orders')} orders at <= {scale.get('rate_per_s')}/s, "
        f"{scale.get('fuzz_examples')} fuzz examples per RPC and transport).",
        "",
        "`make soak` (SHOPMESH_SOAK=1) regenerates this file; `make test` runs the same tests at",
        'the short scale and writes its figures to bench/results/reliability.json ("short";',
        'the soak run goes under "soak"). `python -m tests.reliability.report short` renders',
        "this file from the latest short run.",
        "",
        "## Orders under faults",
        "",
    ]
    if o and "orders_attempted" not in o:
        lines.append(
            f"Did not finish (see Tests below); faults injected before it stopped: "
            f"{len(run.get('faults', []))}; stack rescues: {o.get('stack_rescues')}"
        )
    elif o:
        lines += [
            _table(
                [
                    (
                        "orders placed (attempted / confirmed)",
                        f"{o['orders_attempted']} / {o['orders_confirmed']}",
                    ),
                    ("faults injected", len(run.get("faults", []))),
                    ("lost orders", o["lost"]),
                    ("duplicated orders (keys with >1 order)", o["duplicated"]),
                    ("oversold units", o["oversold_units"]),
                    ("stock leaked (units not taken or released twice)", o["stock_leaked_units"]),
                    ("orders without OrderPlaced", o["missing_order_placed"]),
                    ("orders with >1 OrderPlaced event id", o["extra_order_placed_event_ids"]),
                    (
                        "OrderPlaced redelivered copies (same event id)",
                        o["order_placed_wire_redeliveries"],
                    ),
                    ("orders without email", o["missing_emails"]),
                    ("orders with 2 distinct emails", o["orders_with_two_message_ids"]),
                    (
                        "email resent after kill -9 (same Message-ID)",
                        o["email_resent_same_message_id"],
                    ),
                    ("answers outside the contract", o["contract_violations"]),
                    ("client retries", o["retries"]),
                    (
                        "placement time (s) at bounded rate (/s)",
                        f"{o['placement_seconds']} at {o['rate_per_s']}",
                    ),
                ],
                ("figure", "value"),
            ),
            "",
            "Faults (each undone in a `finally`):",
            "",
            _table(
                [
                    (f["component"], f["fault"], f["outage_s"], f.get("after_orders", ""))
                    for f in run.get("faults", [])
                ],
                ("component", "fault", "outage (s)", "after orders"),
            ),
        ]
    else:
        lines.append("(not run)")
    ov = run.get("oversell") or {}
    lines += [
        "",
        "## Oversell",
        "",
        _table(sorted(ov.items()), ("figure", "value")) if ov else "(not run)",
    ]
    fz = run.get("fuzz") or {}
    lines += ["", "## Fuzzing (hypothesis, strategies from the proto descriptors)", ""]
    if fz:
        rows = [
            (
                rpc,
                t.get("direct", ""),
                t.get("grpc_web", ""),
                t.get("rest", ""),
                ", ".join(f"{k} {v}" for k, v in sorted(t.get("statuses", {}).items())),
            )
            for rpc, t in sorted(fz.items())
        ]
        lines.append(
            _table(rows, ("RPC", "direct cases", "gRPC-Web cases", "REST cases", "statuses"))
        )
    else:
        lines.append("(not run)")
    sec = run.get("security") or {}
    lines += [
        "",
        "## Security",
        "",
        _table(sorted(sec.items()), ("check", "cases")) if sec else "(not run)",
    ]
    tests = run.get("tests") or {}
    fails = run.get("failures") or {}
    lines += [
        "",
        "## Tests",
        "",
        f"{sum(1 for v in tests.values() if v == 'passed')} passed, "
        f"{sum(1 for v in tests.values() if v == 'failed')} failed, "
        f"{sum(1 for v in tests.values() if v == 'skipped')} skipped.",
        "",
    ]
    if fails:
        lines.append(_table(sorted(fails.items()), ("test", "failure / skip reason")))
    else:
        lines.append("No failures.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    mode = sys.argv[1] if len(sys.argv) > 1 else "soak"
    REPORT.write_text(render(json.loads(RESULTS.read_text())[mode]))
    print(f"wrote {REPORT} from the {mode} run")
