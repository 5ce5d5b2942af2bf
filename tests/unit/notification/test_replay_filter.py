"""Dead-letter replay selection (ReplayFilter), the CLI's time arguments, and how a record
that did not decode is classified (poison -> DLQ, registry away -> retry). No I/O."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from confluent_kafka.schema_registry.common._httpx_compat import httpx as registry_http
from confluent_kafka.schema_registry.error import SchemaRegistryError

from services.notification.__main__ import _time
from services.notification.domain import (
    DependencyUnavailableError,
    TransientError,
    UndecodableEventError,
    UnknownSchemaError,
)
from services.notification.replay import ReplayFilter
from services.notification.routing import H_DLQ_TIMESTAMP, classify_decode_error
from services.runtime.kafka import HEADER_EVENT_ID

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MS = int(T.timestamp() * 1000)


def _dead(at_ms: int | None, event_id: str = "e-1") -> dict[str, bytes]:
    headers = {HEADER_EVENT_ID: event_id.encode()}
    if at_ms is not None:
        headers[H_DLQ_TIMESTAMP] = str(at_ms).encode()
    return headers


# ---------------------------------------------------------------- ReplayFilter.matches


def test_no_filter_matches_everything():
    assert ReplayFilter().matches(_dead(MS), 0)
    assert ReplayFilter().matches({}, 0)


def test_window_is_since_inclusive_until_exclusive():
    flt = ReplayFilter(since=T, until=T + timedelta(minutes=10))
    assert flt.matches(_dead(MS), 0)  # exactly `since`
    assert flt.matches(_dead(MS + 599_999), 0)
    assert not flt.matches(_dead(MS - 1), 0)  # just before
    assert not flt.matches(_dead(MS + 600_000), 0)  # exactly `until`


def test_open_ended_windows():
    assert ReplayFilter(since=T).matches(_dead(MS + 10**9), 0)
    assert not ReplayFilter(since=T).matches(_dead(MS - 1), 0)
    assert ReplayFilter(until=T).matches(_dead(0), 0)
    assert not ReplayFilter(until=T).matches(_dead(MS), 0)


def test_dead_letter_time_header_wins_over_record_timestamp():
    """The DLQ copy's own timestamp is when it was forwarded; the header says when it was
    dead-lettered (the same here, but a copied or re-produced DLQ keeps the header)."""
    flt = ReplayFilter(since=T)
    assert not flt.matches(_dead(MS - 1), MS + 5000)
    assert flt.matches(_dead(MS), MS - 5000)


def test_record_timestamp_used_without_a_usable_header():
    flt = ReplayFilter(since=T)
    assert flt.matches(_dead(None), MS)
    assert not flt.matches(_dead(None), MS - 1)
    garbled = {**_dead(None), H_DLQ_TIMESTAMP: b"yesterday"}
    assert flt.matches(garbled, MS) and not flt.matches(garbled, MS - 1)


def test_event_ids_and_time_must_both_match():
    flt = ReplayFilter(since=T, event_ids=frozenset({"e-1", "e-2"}))
    assert flt.matches(_dead(MS, "e-2"), 0)
    assert not flt.matches(_dead(MS, "e-3"), 0)  # right time, other event
    assert not flt.matches(_dead(MS - 1, "e-1"), 0)  # right event, too early
    assert not flt.matches({H_DLQ_TIMESTAMP: str(MS).encode()}, 0)  # no event id header


# ---------------------------------------------------------------- CLI --since / --until


@pytest.mark.parametrize(
    ("text", "ago"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("0m", 0)],
)
def test_relative_times_are_that_long_ago(text, ago):
    before = datetime.now(UTC)
    at = _time(text)
    after = datetime.now(UTC)
    assert at.tzinfo is not None
    assert before - timedelta(seconds=ago) <= at <= after - timedelta(seconds=ago)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:00:00Z", T),
        ("2025-03-01T12:00:00+00:00", T),
        ("2025-03-01T14:00:00+02:00", T),  # offsets are honoured, not dropped
        ("2025-03-01T12:00:00", T),  # no zone: UTC, not the machine's local time
        ("2025-03-01T12:00:00.250Z", T + timedelta(milliseconds=250)),
    ],
)
def test_iso_times(text, expected):
    at = _time(text)
    assert at == expected and at.tzinfo is not None


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "-5m", "1.5h", "yesterday", "15 m"])
def test_bad_times_are_refused(text):
    with pytest.raises(ValueError):
        _time(text)


def test_cli_rejects_a_bad_time_naming_the_option(capsys):
    from services.notification.__main__ import cli

    with pytest.raises(SystemExit) as exc:
        cli(["replay", "--since", "last tuesday"])
    assert exc.value.code == 2
    assert "--since" in capsys.readouterr().err


# ---------------------------------------------------------------- decode failures


@pytest.mark.parametrize("status", [500, 502, 503, -1, 0])
def test_registry_server_errors_are_transient(status):
    err = classify_decode_error(SchemaRegistryError(status, -1, "down"))
    assert isinstance(err, DependencyUnavailableError) and isinstance(err, TransientError)


def test_unknown_schema_id_is_permanent():
    err = classify_decode_error(SchemaRegistryError(404, 40403, "Schema not found"))
    assert isinstance(err, UnknownSchemaError)


def test_registry_client_errors_other_than_404_are_permanent():
    assert isinstance(classify_decode_error(SchemaRegistryError(422, 1, "no")), UnknownSchemaError)


@pytest.mark.parametrize(
    "exc",
    [
        # What AvroSerde.decode raises with the registry down: the registry client's own
        # HTTP library (httpx2 when installed, imported under the name httpx).
        registry_http.ConnectError("All connection attempts failed"),
        registry_http.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
    ],
)
def test_registry_unreachable_is_transient(exc):
    assert isinstance(classify_decode_error(exc), DependencyUnavailableError)


@pytest.mark.parametrize(
    "exc", [ValueError("not Confluent wire format"), EOFError(), KeyError("f")]
)
def test_garbage_is_undecodable(exc):
    err = classify_decode_error(exc)
    assert isinstance(err, UndecodableEventError)
    assert err.reason == "undeserializable"
