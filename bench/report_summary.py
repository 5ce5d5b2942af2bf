"""The headline table at the top of bench/README.md: one row per benchmark's main figure,
each beside the baseline it was measured with.
"""

from __future__ import annotations

from typing import Any

from bench.report_sections import _cost_rows


def _cell(r: dict[str, Any], rpc: str, c: int, config: str) -> dict[str, Any]:
    for cell in r.get("cells", []):
        if (cell.get("rpc"), cell.get("concurrency"), cell.get("config")) == (rpc, c, config):
            return cell
    return {}


def _med(v: Any) -> Any:
    return v.get("median") if isinstance(v, dict) else v


def summary(results: dict[str, dict[str, Any]]) -> list[str]:
    """One table of the headline figures, each beside the baseline it was measured with."""
    rows: list[tuple[str, str, str, str]] = []
    hot = results.get("hot_rpc", {})
    for config, label in (
        ("runtime_mem", "our runtime, no DB"),
        ("grpclib_upb", "bare grpclib + upb"),
        ("betterproto2", "grpclib + betterproto2"),
        ("service_db", "product service with PostgreSQL"),
    ):
        cell = _cell(hot, "GetProduct", 16, config)
        if cell:
            rows.append(
                ("hot_rpc", f"GetProduct C=16, {label}", f"{_med(cell.get('per_s'))} calls/s",
                 f"x{_med(cell.get('ratio_vs_grpcio'))} of grpc.aio")
            )  # fmt: skip
    cat = results.get("catalog_read", {})
    for rpc in ("GetProduct", "ListProducts"):
        new, old = _cell(cat, rpc, 16, "service_db"), _cell(cat, rpc, 16, "service_db_base")
        off = _cell(cat, rpc, 16, "service_db_nocache")
        if new and old and off:
            rows.append(
                ("catalog_read", f"{rpc} C=16, product-service CPU per call: cache on / "
                 "cache off (raw prepared reads) / the code before",
                 f"{_med(new['server_cpu_us_per_call'])} / "
                 f"{_med(off['server_cpu_us_per_call'])} / "
                 f"{_med(old['server_cpu_us_per_call'])} us",
                 f"x{_med(new.get('cpu_ratio_vs_service_db_base'))} cheaper than before")
            )  # fmt: skip
    for c in results.get("catalog_cpu", {}).get("cells", []):
        if c["variant"] in ("cache", "base"):
            rows.append(
                ("catalog_cpu", f"{c['rpc']}, {c['variant']}: CPU per call, product + PG",
                 f"{_med(c['product_us_per_call'])} + {_med(c['pg_total_us_per_call'])} us",
                 "product from /proc, PG from cpu_by_part.py; idle subtracted")
            )  # fmt: skip
    changes = results.get("runtime_hot_path", {}).get("changes", [])
    if changes:
        last = changes[-1]
        for row in last.get("rows", []):
            if (row.get("rpc"), row.get("concurrency")) == ("GetProduct", 16):
                rows.append(
                    ("runtime_hot_path", f"GetProduct C=16, our runtime after '{last['change']}'",
                     f"x{_med(row.get('new_ratio_vs_grpcio'))} of grpc.aio",
                     f"x{_med(row.get('ratio_new_vs_base'))} of the runtime before")
                )  # fmt: skip
    if "latest" in results.get("mesh_overhead", {}):  # the A/B layout (bench/mesh_overhead.py)
        from bench.mesh_overhead_report import headline

        rows += [("mesh_overhead", *row) for row in headline(results["mesh_overhead"])]
    for p in results.get("mesh_overhead", {}).get("points", []):
        if p.get("upstream") == "product_service" and p.get("path") != "direct":
            rows.append(
                ("mesh_overhead", f"GetProduct via {p['path']}", f"{p['calls_per_s']} calls/s, "
                 f"p99 {p['p99_ms']} ms", f"x{p.get('calls_per_s_ratio_vs_direct')} of direct")
            )  # fmt: skip
    shop = results.get("shop_load", {})
    if shop:
        best = shop.get("best_under_threshold") or {}
        rows.append(
            ("shop_load", f"req/s at p99 < {shop.get('p99_threshold_ms')} ms (whole mix)",
             f"{shop.get('req_per_s_at_p99_under_threshold')}",
             f"{best.get('orders_per_s', 0)} orders/s, 0 errors")
        )  # fmt: skip
        if "req_per_s_at_read_p99_under_threshold" in shop:
            rows.append(
                ("shop_load", "req/s with reads' p99 under it",
                 f"{shop['req_per_s_at_read_p99_under_threshold']}",
                 f"checkout p99 {shop.get('checkout_p99_ms_at_that_step')} ms at that step")
            )  # fmt: skip
    order = results.get("order", {})
    relay = order.get("relay", {})
    if relay:
        rows.append(
            ("order", "outbox relay", f"{relay.get('relay_events_per_s')} events/s",
             f"aiokafka alone {relay.get('aiokafka_producer_only_events_per_s')}/s, "
             f"confluent-kafka alone {relay.get('confluent_producer_only_events_per_s')}/s")
        )  # fmt: skip
    for key, change in results.get("relay_ab", {}).get("changes", {}).items():
        if "ratio_new_vs_base" in change:
            rows.append(
                ("relay_ab", f"{key}: relay events/s, new vs base",
                 f"x{_med(change['ratio_new_vs_base'])}",
                 f"{_med(change['events_per_s_new'])} vs {_med(change['events_per_s_base'])}/s")
            )  # fmt: skip
        elif "reply_to_topic_p50_ms" in change:
            rows.append(
                ("relay_ab", f"{key}: PlaceOrder reply -> event on the topic",
                 f"p50 {_med(change['reply_to_topic_p50_ms'])} ms, "
                 f"p99 {_med(change['reply_to_topic_p99_ms'])} ms",
                 f"at {_med(change['achieved_per_s'])} orders/s achieved; PlaceOrder p50 "
                 f"{_med(change['place_p50_ms'])} ms")
            )  # fmt: skip
        elif change.get("events_per_s_new"):
            rows.append(
                ("relay_ab", f"{key}: relay events/s (new code alone)",
                 f"{_med(change['events_per_s_new'])}/s",
                 change.get("note", "")[:120])
            )  # fmt: skip
        elif "speedup_new_vs_base" in change:
            rows.append(
                ("relay_ab", f"{key}: {change.get('what', '')}",
                 f"{change['ms_new']} ms vs {change['ms_base']} ms",
                 f"x{change['speedup_new_vs_base']} faster")
            )  # fmt: skip
    for key, change in results.get("order_place_ab", {}).get("changes", {}).items():
        for c, cell in change.get("by_concurrency", {}).items():
            rows.append(
                ("order_place_ab", f"{key}: PlaceOrder C={c}, calls/s new vs base",
                 f"x{_med(cell['ratio_per_s_new_over_base'])}",
                 f"p50 {_med(cell['new']['p50_ms'])} vs {_med(cell['base']['p50_ms'])} ms")
            )  # fmt: skip
    cost_runs = results.get("order_cost", {}).get("runs", {})
    if cost_runs:
        first, last = next(iter(cost_runs)), list(cost_runs)[-1]
        whole = {n: _cost_rows(cost_runs[n]) for n in (first, last)}
        rows.append(
            ("order_cost", f"CPU per placed order, whole stack ({last})",
             f"{whole[last]['**whole stack**']:.1f} ms (order path "
             f"{whole[last]['**order path** (rows 1-9)']:.1f} ms)",
             f"{first}: {whole[first]['**whole stack**']:.1f} ms (order path "
             f"{whole[first]['**order path** (rows 1-9)']:.1f} ms)")
        )  # fmt: skip
    place = order.get("rpc", {}).get("place_order", {})
    get = order.get("rpc", {}).get("get_order", {})
    if place.get("per_s"):
        rows.append(
            ("order", "PlaceOrder (direct gRPC)",
             f"{place['per_s']}/s, p99 {place.get('p99_ms')} ms", f"GetOrder {get.get('per_s')}/s")
        )  # fmt: skip
    rpc = order.get("rpc", {})
    web, stack_direct = rpc.get("place_order_gateway", {}), rpc.get("place_order_stack_direct", {})
    if web.get("per_s") and stack_direct.get("per_s"):
        rows.append(
            ("order", "PlaceOrder via NGINX -> Envoy (gRPC-Web, user JWT)",
             f"{_med(web['per_s'])}/s, p50 {_med(web.get('p50_ms'))} ms, "
             f"p99 {_med(web.get('p99_ms'))} ms",
             f"x{_med(rpc.get('place_order_gateway_ratio_vs_stack_direct'))} of the same service "
             f"direct ({_med(stack_direct['per_s'])}/s, p99 {_med(stack_direct.get('p99_ms'))} "
             f"ms); x{rpc.get('place_order_gateway_ratio_vs_direct')} of the in-process server")
        )  # fmt: skip
    notif = results.get("notification", {})
    if notif.get("throughput"):
        t, lat = notif["throughput"], notif.get("latency", {})
        base = notif.get("throughput_baseline_bare_consume", {})
        rows.append(
            ("notification", "emails/s (consume, GetUser, SMTP, log)", f"{t.get('emails_per_s')}",
             f"bare consume {base.get('records_per_s')} records/s")
        )  # fmt: skip
        lb = notif.get("latency_baseline_bare_consume", {})
        rows.append(
            ("notification", f"order event -> email at {lat.get('rate_per_s')}/s",
             f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms",
             f"produce -> consumer p50 {lb.get('p50_ms')}, p99 {lb.get('p99_ms')} ms")
        )  # fmt: skip
    o2e = notif.get("order_to_email", {})
    if o2e.get("p50_ms") is not None:
        split = notif.get("order_to_email_split_place_to_topic", {})
        rows.append(
            ("notification", f"PlaceOrder reply -> email in sink at {o2e.get('rate_per_s')}/s "
             "(relay, Kafka, consumer, SMTP)",
             f"p50 {o2e['p50_ms']} ms, p99 {o2e.get('p99_ms')} ms",
             f"reply -> OrderPlaced on topic p50 {split.get('p50_ms')}, "
             f"p99 {split.get('p99_ms')} ms")
        )  # fmt: skip
    auth = results.get("auth", {})
    if "rps_ratio_jwt_over_no_jwt" in auth:
        rows.append(
            ("auth", "REST user call through Envoy with jwt_authn + RBAC",
             f"x{auth['rps_ratio_jwt_over_no_jwt']} req/s of the same Envoy without",
             f"runtime re-verify {auth.get('runtime_verify', {}).get('median_us')} us/token")
        )  # fmt: skip
    authz = results.get("internal_authz", {})
    if "envoy_cpu_ratio_authz_over_none" in authz:
        cpu = authz.get("envoy_cpu_us_per_call_median", {})
        svc_us = authz.get("runtime_check", {}).get("service_token", {}).get("median_us")
        rows.append(
            ("internal_authz", "service call through Envoy's internal listener with "
             "jwt_authn (provider per service) + per-method RBAC",
             f"Envoy CPU x{authz['envoy_cpu_ratio_authz_over_none']} per call "
             f"({cpu.get('authz')} vs {cpu.get('no_authz')} us), "
             f"calls/s x{authz.get('rps_ratio_authz_over_none')}",
             f"runtime check {svc_us} us/service token")
        )  # fmt: skip
    reg = results.get("registry", {}).get("results", {})
    base_rps = reg.get("baseline_get_root", {}).get("rps")
    for key, label in (
        ("get_schema_by_id", "GET /schemas/ids/{id}"),
        ("register_idempotent", "POST /subjects/{s}/versions (same schema)"),
    ):
        if key in reg:
            rows.append(
                ("registry", label, f"{reg[key]['rps']} req/s, p99 {reg[key]['p99_ms']} ms",
                 f"x{reg[key].get('ratio_to_baseline')} of GET / ({base_rps} req/s)")
            )  # fmt: skip
    rep = results.get("replica", {})
    if rep:
        lag = rep.get("lag_bytes", {})
        rows.append(
            ("replica", "reads served by the replica under writes", f"{rep.get('replica_share')}",
             f"replica lag p99 {lag.get('p99')} bytes")
        )  # fmt: skip
    if not rows:
        return []
    out = ["## Latest figures", "", "| benchmark | figure | value | beside |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return [*out, ""]
