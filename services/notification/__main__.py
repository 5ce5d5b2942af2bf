"""CLI: `python -m services.notification [serve]` runs the service;
`python -m services.notification replay [--since T] [--until T] [--event-id ID ...]
[--topic T] [--max N]` moves dead letters back to their source topic (same NOTIFICATION_*
environment as the service) and prints what it did as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from services.notification.config import NotificationConfig
from services.notification.replay import ReplayFilter, replay_dead_letters
from services.notification.routing import Topology
from services.runtime.kafka import AvroSerde, EventProducer


def _time(text: str) -> datetime:
    """ISO 8601 (`2025-01-31T12:00:00Z`) or a relative `15m` / `2h` / `1d` ago."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.fromtimestamp(
            datetime.now(UTC).timestamp() - int(text[:-1]) * units[text[-1]], UTC
        )
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def _replay(args: argparse.Namespace) -> dict[str, int]:
    cfg = NotificationConfig.from_env()
    flt = ReplayFilter(
        topics=tuple(args.topic or ()),
        since=args.since,
        until=args.until,
        event_ids=frozenset(args.event_id or ()),
        max_records=args.max,
    )
    async with EventProducer(cfg.kafka, AvroSerde(cfg.kafka.registry_url)) as producer:
        result = await replay_dead_letters(
            cfg.kafka.bootstrap_servers, producer, Topology(cfg.topics, cfg.retry_delays_s), flt
        )
    return {"replayed": result.replayed, "scanned": result.scanned}


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notification")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (default)")
    rp = sub.add_parser("replay", help="move dead letters back to their source topic")
    rp.add_argument("--since", type=_time, help="dead-lettered at or after (ISO time or 15m)")
    rp.add_argument("--until", type=_time, help="dead-lettered before")
    rp.add_argument("--event-id", action="append", help="only this event id (repeatable)")
    rp.add_argument("--topic", action="append", help="only this source topic (repeatable)")
    rp.add_argument("--max", type=int, default=1000, help="at most this many records")
    args = parser.parse_args(argv)
    if args.command == "replay":
        print(json.dumps(asyncio.run(_replay(args))))
        return
    from services.notification import main
    from services.runtime.server import run

    run(main.main)


if __name__ == "__main__":
    cli(sys.argv[1:])
