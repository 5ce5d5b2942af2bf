"""FetchPolicy: a consumer's own fetch wait and size, unless the service's environment sets
them (<PREFIX>_KAFKA_FETCH_MAX_WAIT_MS / _FETCH_MIN_BYTES)."""

from __future__ import annotations

import pytest

from services.runtime.kafka import FetchPolicy, KafkaConfig

POLICY = FetchPolicy(max_wait_ms=1000, min_bytes=65536)


def test_unset_means_the_consumers_own_policy() -> None:
    cfg = KafkaConfig.from_env("CART", {})
    assert cfg.fetch_max_wait_ms is None and cfg.fetch_min_bytes is None
    assert POLICY.options(cfg) == {"fetch_max_wait_ms": 1000, "fetch_min_bytes": 65536}


def test_environment_wins_over_the_policy() -> None:
    env = {"CART_KAFKA_FETCH_MAX_WAIT_MS": "500", "CART_KAFKA_FETCH_MIN_BYTES": "1"}
    cfg = KafkaConfig.from_env("CART", env)
    assert POLICY.options(cfg) == {"fetch_max_wait_ms": 500, "fetch_min_bytes": 1}
    # One set, the other from the policy; an empty value is unset.
    cfg = KafkaConfig.from_env("CART", {"CART_KAFKA_FETCH_MAX_WAIT_MS": "100",
                                        "CART_KAFKA_FETCH_MIN_BYTES": " "})  # fmt: skip
    assert POLICY.options(cfg) == {"fetch_max_wait_ms": 100, "fetch_min_bytes": 65536}


def test_zero_min_bytes_still_asks_for_a_record() -> None:
    cfg = KafkaConfig.from_env("CART", {"CART_KAFKA_FETCH_MIN_BYTES": "0"})
    assert POLICY.options(cfg)["fetch_min_bytes"] == 1


@pytest.mark.parametrize("value", ["soon", "-5", "1.5"])
def test_bad_values_name_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="CART_KAFKA_"):
        KafkaConfig.from_env("CART", {"CART_KAFKA_FETCH_MAX_WAIT_MS": value})
