"""bench/README.md's sections for the benchmarks that need more than the generic table: hot
RPCs, the runtime hot path, catalog CPU, the order placement A/B, CPU per order by part,
the relay A/B.
"""

from __future__ import annotations

from typing import Any

from bench.common import fmt_range


def _machine(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    if isinstance(m, str):
        return m
    v = m.get("versions", {})
    vs = ", ".join(f"{k} {x}" for k, x in v.items() if x != "-")
    return (
        f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}, load {m.get('loadavg_1m', '?')} at start"
        + (f"; {vs}" if vs else "")
    )


def _flatten(v: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of a result as (dotted.key, value); lists are counted, not expanded."""
    if isinstance(v, dict):
        return [kv for k, x in v.items() for kv in _flatten(x, f"{prefix}.{k}" if prefix else k)]
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 8:
            return [(prefix, ", ".join(str(x) for x in v))]
        return [(prefix, f"{len(v)} entries (in the JSON)")]
    return [(prefix, str(v))]


def hot_rpc(r: dict[str, Any], name: str = "hot_rpc") -> list[str]:
    from bench.hot_rpc_report import findings, table

    if name != "hot_rpc":  # a kept copy: its profile files were overwritten by later runs
        r = {k: v for k, v in r.items() if k != "profiles"}
    out = [f"## {name}: GetProduct / ListProducts(20) per server stack", ""]
    out += [f"{r.get('when', '')}; {_machine(r)}", "", r["what"], ""]
    out += [table(r), ""]
    found = findings(r)
    if found:
        out += ["**Findings** (derived from this run)", ""] + [f"- {f}" for f in found] + [""]
    ab = [c for c in r["cells"] if "ratio_vs_service_db_old" in c]
    if ab:
        out += ["**DB read path A/B** (service_db = single-statement replica reads in "
                "autocommit + no per-checkout ping, vs service_db_old = previous path: "
                "pre-ping (BEGIN;;ROLLBACK) + BEGIN READ ONLY + query + COMMIT), "
                "same run, interleaved:", "",
                "| RPC | C | calls/s ratio new/old |", "|---|---:|---:|"]  # fmt: skip
        out += [
            f"| {c['rpc']} | {c['concurrency']} | {fmt_range(c['ratio_vs_service_db_old'])} |"
            for c in ab
        ]
        out.append("")
    for name, prof in (r.get("profiles") or {}).items():
        out += [f"Profile of `{name}` (pyinstrument, GetProduct C=16, top self time; the "
                f"full tree is in results/hot_rpc_profile_{name}.txt):", "",
                "| frame | share of samples |", "|---|---:|"]  # fmt: skip
        out += [f"| `{t['frame']}` | {t['share'] * 100:.1f}% |" for t in prof["top_self"][:15]]
        out.append("")
    if r.get("skipped"):
        out += [f"Skipped: {r['skipped']}", ""]
    return out


def runtime_hot_path(r: dict[str, Any]) -> list[str]:
    from bench.runtime_hot_path import table

    out = ["## runtime_hot_path: same-run A/B of each runtime change", "", r.get("what", ""), ""]
    for e in r["changes"]:
        out += [f"**{e['change']}** (base {e['base']}; {_machine(e)})", "", table(e), ""]
    return out


def catalog_cpu(r: dict[str, Any]) -> list[str]:
    from bench.catalog_cpu import table

    out = ["## catalog_cpu: CPU per catalog read by part (cpu_by_part.py)", ""]
    out += [f"{r.get('when', '')}; {_machine(r)}; base {r['settings'].get('base')}", ""]
    return [*out, r["what"], "", table(r), ""]


def order_place_ab(r: dict[str, Any]) -> list[str]:
    """Each PlaceOrder A/B: per concurrency, both sides' latency and the same-run ratios."""
    out = ["## order_place_ab: same-run A/B of PlaceOrder", ""]
    for name, e in r.get("changes", {}).items():
        out += [f"**{name}** ({e.get('when', '')}; base {e.get('base')}, new {e.get('new')}; "
                f"{_machine(e)})", ""]  # fmt: skip
        if e.get("note"):
            out += [e["note"], ""]
        out += ["| C | p50 ms base | p50 ms new | p99 ms base | p99 ms new | p50 base/new | "
                "calls/s new/base | CPU ms/order base | CPU ms/order new |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        parts: dict[str, list[str]] = {}
        for c, cell in e.get("by_concurrency", {}).items():
            b, n = cell["base"], cell["new"]
            cpu = [fmt_range(x["cpu_ms_per_call_total"]) if "cpu_ms_per_call_total" in x else ""
                   for x in (b, n)]  # fmt: skip
            out.append(
                f"| {c} | {fmt_range(b['p50_ms'])} | {fmt_range(n['p50_ms'])} | "
                f"{fmt_range(b['p99_ms'])} | {fmt_range(n['p99_ms'])} | "
                f"{fmt_range(cell['ratio_p50_ms_base_over_new'])} | "
                f"{fmt_range(cell['ratio_per_s_new_over_base'])} | {cpu[0]} | {cpu[1]} |"
            )
            for part in sorted(b.get("cpu_ms_per_call", {})):
                parts.setdefault(part, []).append(
                    f"C={c}: {b['cpu_ms_per_call'][part]['median']:.2f} -> "
                    f"{n.get('cpu_ms_per_call', {}).get(part, {}).get('median', 0):.2f}"
                )
        if parts:
            out += ["", "CPU ms per order by part, base -> new (median of rounds; shared parts "
                    "also carry whatever else the machine did meanwhile): "
                    + "; ".join(f"{p} {', '.join(v)}" for p, v in parts.items())]  # fmt: skip
        out.append("")
    return out


# order_cost: display rows (label, parts summed); PostgreSQL backends are grouped by database.
COST_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("order service (API, relay, sweeper)", ("order",)),
    ("FerretDB", ("ferretdb",)),
    ("PostgreSQL for FerretDB", ("pg-primary:ferretdb",)),
    ("product (ReserveStock)", ("product",)),
    ("PostgreSQL product", ("pg-primary:product", "pg-replica:product")),
    ("user (GetUser)", ("user",)),
    ("PostgreSQL user", ("pg-primary:user", "pg-replica:user")),
    ("Envoy (service-to-service hops)", ("envoy",)),
    ("Kafka", ("kafka",)),
    ("notification", ("notification",)),
    ("PostgreSQL notification", ("pg-primary:notification", "pg-replica:notification")),
    ("SMTP sink", ("smtp-sink",)),
)
COST_PATH = 9  # the first rows are the order path (PlaceOrder + relay); then notification's
NOT_STACK = ("other", "load generator")


def _cost_rows(run: dict[str, Any]) -> dict[str, float]:
    # The stack's own processes when the run has them (cpu_by_part.py's parts also hold
    # other engineers' servers of the same name on this shared machine).
    cpu = run.get("cpu_ms_per_order_stack_only") or run["cpu_ms_per_order"]
    named = {p for _, parts in COST_ROWS for p in parts}
    rows = {label: sum(cpu.get(p, 0.0) for p in parts) for label, parts in COST_ROWS}
    rest = sum(v for p, v in cpu.items() if p not in named and p not in NOT_STACK)
    labels = [label for label, _ in COST_ROWS]
    rows["rest of the stack (auth, registry, Prometheus, PG background, ...)"] = rest
    rows["**order path** (rows 1-9)"] = sum(rows[x] for x in labels[:COST_PATH])
    rows["**notification path**"] = sum(rows[x] for x in labels[COST_PATH:])
    rows["**whole stack**"] = sum(rows[x] for x in labels) + rest
    machine = run["cpu_ms_per_order"]  # cpu_by_part.py's parts: every process
    rows["(not counted: other processes on the shared machine)"] = machine.get("other", 0.0)
    rows["(not counted: the load generator)"] = machine.get("load generator", 0.0)
    return rows


def order_cost(r: dict[str, Any]) -> list[str]:
    """Where a placed order's CPU goes, per part, one column per labelled run."""
    runs = r.get("runs", {})
    if not runs:
        return []
    names = list(runs)
    out = ["## order_cost: where the CPU of a placed order goes", "", r.get("what", ""), ""]
    for n in names:
        run, s = runs[n], runs[n]["settings"]
        out.append(
            f"- **{n}** ({run['when']}, commit {run['commit']}; {s['rate_per_s']:g} orders/s for "
            f"{s['seconds']:g} s x {s['rounds']} rounds, {run['orders']} orders; "
            f"{_machine(run)}){': ' + run['note'] if run.get('note') else ''}"
        )
    out += ["", "CPU ms per placed order (idle CPU subtracted; median of the rounds; runs "
            "with the stack's own processes measured apart show those, others cpu_by_part.py's "
            "parts, which also hold any same-named process on the machine):", ""]  # fmt: skip
    out += ["| part | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    table = {n: _cost_rows(runs[n]) for n in names}
    for label in table[names[0]]:
        out.append(f"| {label} | " + " | ".join(f"{table[n][label]:.1f}" for n in names) + " |")
    out += ["", "Latency at that rate, and round trips per placed order (idle rate "
            "subtracted; FerretDB: commands it answered, by command; PostgreSQL: "
            "transactions (autocommit statements count one each) and rows, by database):",
            "", "| figure | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names)]  # fmt: skip
    for key, label in (
        ("place_p50_ms", "PlaceOrder p50 ms"),
        ("place_p99_ms", "PlaceOrder p99 ms"),
        ("reply_to_topic_p50_ms", "PlaceOrder reply -> OrderPlaced read from the topic, p50 ms"),
        ("reply_to_topic_p99_ms", "... p99 ms"),
    ):
        out.append(f"| {label} | " + " | ".join(str(runs[n].get(key, "")) for n in names) + " |")
    keys = sorted({k for n in names for k in runs[n]["round_trips_per_order"]})
    for k in keys:
        vals = [runs[n]["round_trips_per_order"].get(k) for n in names]
        out.append(f"| {k} | " + " | ".join("" if v is None else f"{v:.2f}" for v in vals) + " |")
    return [*out, ""]


def relay_ab(r: dict[str, Any]) -> list[str]:
    """Each relay A/B: events/s per side, the same-run ratio, CPU per event by part."""
    out = ["## relay_ab: same-run A/B of the outbox relay", ""]
    for name, e in r.get("changes", {}).items():
        out += [f"**{name}** ({e.get('when', '')}; {_machine(e)})", "", str(e.get("what", "")), ""]
        if e.get("note"):
            out += [e["note"], ""]
        if "reply_to_topic_p50_ms" in e:  # bench/relay_latency.py
            out += ["| figure | median (min-max) |", "|---|---:|"]
            for k in ("reply_to_topic_p50_ms", "reply_to_topic_p99_ms", "place_p50_ms",
                      "place_p99_ms", "achieved_per_s"):  # fmt: skip
                out.append(f"| {k} | {fmt_range(e[k], 1)} |")
            out.append("")
            continue
        if "events_per_s_new" not in e:  # an older entry: its figures as they were kept
            out += [
                f"- {k}: {v}" for k, v in _flatten({k: v for k, v in e.items() if k != "machine"})
            ]
            out.append("")
            continue
        sides = [s for s in ("base", "new") if e.get(f"events_per_s_{s}")]
        out += ["| figure | " + " | ".join(sides) + " |", "|---|" + "---:|" * len(sides)]
        out.append(
            "| events/s | " + " | ".join(fmt_range(e[f"events_per_s_{s}"], 1) for s in sides) + " |"
        )
        parts = sorted({p for s in sides for p in e.get(f"cpu_us_per_event_{s}", {})})
        for p in parts:
            cells = [e.get(f"cpu_us_per_event_{s}", {}).get(p) for s in sides]
            out.append(
                f"| CPU us per event: {p} | "
                + " | ".join(fmt_range(c, 0) if c else "" for c in cells)
                + " |"
            )
        if "ratio_new_vs_base" in e:
            out += ["", f"events/s new/base: {fmt_range(e['ratio_new_vs_base'])}"]
        out.append("")
    return out


def consumer_fetch_ab(r: dict[str, Any]) -> list[str]:
    """Each A/B of the OrderPlaced consumers' fetch policy: CPU per order of Kafka and the
    consumers per side and rate, the same-run ratios, and the idle cost per second."""
    out = ["## consumer_fetch_ab: what the OrderPlaced consumers and Kafka cost", ""]
    doc = "bench/consumer_fetch_ab.py: base = aiokafka's fetch defaults, new = FetchPolicy"
    for name, e in r.get("changes", {}).items():
        out += [f"**{name}** ({e.get('when', '')}; commit {e.get('commit', '?')}; {_machine(e)})"]
        out += ["", doc + (f"; {e['note']}" if e.get("note") else ""), ""]
        rates = [k for k in e if k.endswith("/s") and isinstance(e[k], dict) and "base" in e[k]]
        for rate in rates:
            x = e[rate]
            out += [f"At {rate} (CPU ms per order, net of idle; median (min-max) over rounds):", ""]
            out += ["| part | base | new | base/new |", "|---|---:|---:|---:|"]
            ratio = x.get("ratio_base_over_new", {})
            for p, cell in x["new"]["cpu_ms_per_order"].items():
                b = x["base"]["cpu_ms_per_order"].get(p)
                rt = fmt_range(ratio[p]) if p in ratio else ""
                out.append(f"| {p} | {fmt_range(b) if b else ''} | {fmt_range(cell)} | {rt} |")
            total = "consumers_and_kafka"
            out.append(
                f"| **{total} (sum)** | {fmt_range(x['base'][f'{total}_ms_per_order'])} | "
                f"{fmt_range(x['new'][f'{total}_ms_per_order'])} | "
                f"{fmt_range(ratio.get(total, {'median': float('nan')}))} |"
            )
            for k in ("commits_per_order", "event_to_email_p50_ms", "event_to_email_p99_ms"):
                out.append(f"| {k} | {fmt_range(x['base'][k])} | {fmt_range(x['new'][k])} | |")
            out.append("")
        idle = e.get("idle_ms_per_s")
        if idle:
            out += ["Idle (no load of ours), CPU ms per second:", ""]
            out += ["| part | base | new |", "|---|---:|---:|"]
            for p, cell in idle["new"].items():
                out.append(f"| {p} | {fmt_range(idle['base'].get(p, cell))} | {fmt_range(cell)} |")
            out.append("")
    for name, lat in r.get("notification_latency", {}).items():
        out += [f"**Notification event -> email: {name}**", "", str(lat.get("what", "")), ""]
        out += ["| figure | base | new |", "|---|---:|---:|"]
        for k in ("p50_ms", "p99_ms", "max_ms"):
            out.append(f"| {k} | {fmt_range(lat['base'][k], 0)} | {fmt_range(lat['new'][k], 0)} |")
        out.append("")
    return out


def consumer_pipeline_ab(r: dict[str, Any]) -> list[str]:
    """Each private A/B of the pipeline's fetch policy: per rate, both sides' consumer CPU,
    broker requests, Kafka's net CPU and record age."""
    out = ["## consumer_pipeline_ab: the ordered pipeline's fetch policy, private A/B", ""]
    rows = (
        ("consumer_ms_per_s", "consumer CPU ms/s", 1),
        ("consumer_us_per_record", "consumer CPU us/record", 0),
        ("fetches_per_s", "fetch requests/s", 1),
        ("fetches_per_record", "fetch requests/record", 3),
        ("commits_per_record", "offset commits/record", 3),
        ("kafka_ms_per_s", "Kafka CPU ms/s (net of no consumer)", 1),
        ("kafka_us_per_record", "Kafka CPU us/record (net)", 0),
        ("age_p50_ms", "record age p50 ms", 0),
        ("age_p99_ms", "record age p99 ms", 0),
    )
    for name, e in r.get("changes", {}).items():
        out += [f"**{name}** ({e.get('when', '')}; commit {e.get('commit', '?')}; {_machine(e)})"]
        out += ["", str(e.get("what", "")), ""]
        if e.get("note"):
            out += [e["note"], ""]
        rates = [k for k in e if k.endswith("/s") and isinstance(e[k], dict) and "base" in e[k]]
        out += ["| figure | " + " | ".join(f"{k} base | {k} new" for k in rates) + " |"]
        out += ["|---|" + "---:|---:|" * len(rates)]
        for key, label, digits in rows:
            cells = []
            for k in rates:
                for side in ("base", "new"):
                    v = e[k][side].get(key)
                    cells.append(fmt_range(v, digits) if v and v.get("n") else "")
            if any(cells):
                out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return out
