"""Notification service entry point: `python -m services.notification.main`."""

from __future__ import annotations

from services.notification.bootstrap import NotificationApp
from services.notification.config import NotificationConfig
from services.runtime.kafka import watch_topic_sizes
from services.runtime.metrics import Metrics
from services.runtime.server import run, serve


async def main() -> int:
    cfg = NotificationConfig.from_env()
    metrics = Metrics("notification")
    app = NotificationApp(cfg, metrics)
    dlqs = [app.topology.dlq_topic(t) for t in cfg.topics]

    async def dlq_sizes() -> None:  # kafka_topic_messages{topic=~".*dlq"}: DLQ size
        await watch_topic_sizes(cfg.kafka, dlqs, metrics)

    tasks = [app.consume, dlq_sizes]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
