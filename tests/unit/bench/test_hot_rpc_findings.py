"""The hot_rpc findings are computed from the run's cells, so they follow the figures."""

from __future__ import annotations

from typing import Any

from bench.hot_rpc_report import findings, profile_groups


def _cell(rpc: str, c: int, config: str, ratio: float, cpu_us: float) -> dict[str, Any]:
    def one(v: float) -> dict[str, float]:
        return {"median": v, "min": v, "max": v, "n": 1}

    return {
        "rpc": rpc,
        "concurrency": c,
        "config": config,
        "ratio_vs_grpcio": one(ratio),
        "server_cpu_us_per_call": one(cpu_us),
    }


def _result(betterproto_list_ratio: float) -> dict[str, Any]:
    cells = []
    for rpc in ("GetProduct", "ListProducts"):
        cells += [
            _cell(rpc, 16, "grpcio", 1.0, 300),
            _cell(rpc, 16, "grpclib_upb", 0.9, 250),
            _cell(rpc, 16, "runtime_mem", 0.3, 1250),
            _cell(rpc, 16, "service_db", 0.1, 3250),
            _cell(rpc, 16, "betterproto", 0.4 if rpc == "GetProduct" else betterproto_list_ratio,
                  800),
        ]  # fmt: skip
    profile = {"top_self": [{"frame": "h2/connection.py:[self]", "share": 0.2},
                            {"frame": "opentelemetry/sdk/trace/__init__.py:[self]", "share": 0.1},
                            {"frame": "somewhere/else.py:f", "share": 0.05}]}  # fmt: skip
    return {"reference": "grpcio", "cells": cells, "profiles": {"runtime_mem": profile}}


def test_findings_state_the_gap_and_the_cpu_it_costs() -> None:
    text = "\n".join(findings(_result(0.1)))
    assert "runtime_mem) serves 0.30-0.30x" in text
    assert "1000-1000 us of server CPU per call more than bare grpclib" in text
    assert "adds 2000-2000 us" in text
    assert "choice of upb messages holds" in text


def test_findings_say_when_an_alternative_catches_up() -> None:
    text = "\n".join(findings(_result(0.95)))
    assert "revisit ARCHITECTURE 3a" in text
    assert "choice of upb messages holds" not in text


def test_profile_groups_sum_the_shares_per_stack_part() -> None:
    groups = profile_groups(_result(0.1)["profiles"]["runtime_mem"])
    assert groups == {
        "HTTP/2 transport (grpclib, h2, hpack, hyperframe)": 0.2,
        "OpenTelemetry": 0.1,
        "other": 0.05,
    }
