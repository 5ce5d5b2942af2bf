"""`python -m bench [NAME...]` (= `make bench`): run the benchmarks (all, or the named ones),
each in its own process with a wall-clock bound, then redraw the plots and regenerate
bench/README.md from bench/results/*.json. `python -m bench --report` only regenerates.

Loopback only; a benchmark that sees an error exits non-zero and the run says so loudly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
# name -> (module, extra args, wall-clock bound in seconds)
BENCHMARKS: dict[str, tuple[str, list[str], int]] = {
    "hot_rpc": ("bench.hot_rpc", ["--seconds", "2", "--rounds", "3", "--profile"], 1500),
    "grpc_direct": ("bench.grpc_direct", ["--seconds", "3"], 600),
    "mesh_overhead": ("bench.mesh_overhead", ["--seconds", "3"], 600),
    "shop_load": ("bench.shop_load", [], 900),
    "replica": ("bench.replica", [], 300),
    "order": ("bench.order_bench", [], 600),
    "order_cost": ("bench.order_cost", ["--rounds", "3"], 900),
    "relay_ab": ("bench.relay_ab", ["--events", "300", "--rounds", "3"], 900),
    "notification": ("bench.notification_bench", [], 600),
    "registry": ("bench.registry_bench", [], 300),
    "auth": ("bench.auth_bench", [], 300),
    "internal_call_ab": ("bench.internal_call_ab", ["--rounds", "6"], 300),
    "token_memory_ab": ("bench.token_memory_ab", ["--rounds", "5"], 300),
    "internal_authz": ("bench.internal_authz", ["--rounds", "6", "--seconds", "3"], 300),
    "pricing_ab": ("bench.pricing_ab", ["--rounds", "4", "--orders", "40"], 600),
    "currency_ab": ("bench.currency_ab", ["--rounds", "4", "--seconds", "3"], 300),
    "recommendation_events": ("bench.recommendation_events", ["--events", "2000"], 600),
    "frontend_transport": (
        "bench.frontend_transport",
        ["--rounds", "5", "--seconds", "10", "--slice-calls", "50"],
        600,
    ),
}


def run(names: list[str]) -> list[str]:
    # The benchmarks measure the running platform (and start private copies beside it):
    # bring the stack up once, as `make up` would, instead of each one skipping parts.
    if subprocess.run([sys.executable, "-m", "stack", "up"], cwd=HERE.parent).returncode:
        print("!! stack up failed: no benchmark run", flush=True)
        return names
    failed = []
    for name in names:
        module, args, bound = BENCHMARKS[name]
        if not (HERE / f"{module.split('.')[1]}.py").exists():
            print(f"== {name}: SKIPPED ({module} not in this checkout)", flush=True)
            continue
        print(f"== {name} ({module}, at most {bound}s)", flush=True)
        try:
            rc = subprocess.run(
                [sys.executable, "-m", module, *args], cwd=HERE.parent, timeout=bound
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            print(f"!! {name}: exceeded its {bound}s bound", flush=True)
        if rc != 0:
            print(f"!! {name}: FAILED (exit {rc}); its result file was not updated", flush=True)
            failed.append(name)
    return failed


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def render_readme() -> str:
    from bench.report import render

    return render({p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))})


def main(argv: list[str]) -> int:
    report_only = "--report" in argv
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = [] if report_only else run(names)
    try:
        from bench.plots import draw

        draw(RESULTS)
    except Exception as exc:  # plots are a convenience; the README still regenerates
        print(f"plots not drawn: {exc!r}")
    (HERE / "README.md").write_text(render_readme())
    print(f"wrote {HERE / 'README.md'}")
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
