"""Notification service entry point: `python -m services.notification.main [migrate]`."""

from __future__ import annotations

import sys

from services.notification.bootstrap import NotificationApp
from services.notification.config import NotificationConfig
from services.runtime.kafka import watch_topic_sizes
from services.runtime.metrics import Metrics
from services.runtime.server import per_process, run, serve


async def main() -> int:
    cfg = NotificationConfig.from_env()
    metrics = Metrics("notification")
    app = NotificationApp(cfg, metrics)
    if sys.argv[1:] == ["migrate"]:  # the schema only (Kubernetes' init container)
        await app.db.open()
        await app.log.create_schema()
        await app.db.close()
        return 0
    dlqs = [app.topology.dlq_topic(t) for t in cfg.topics]

    async def dlq_sizes() -> None:  # kafka_topic_messages{topic=~".*dlq"}: DLQ size
        await watch_topic_sizes(cfg.kafka, dlqs, metrics)

    # Every worker opens its consumers (NotificationApp.open), so every worker polls them: a
    # group member that never polled would hold its partitions until the group evicts it.
    tasks = [per_process(app.consume), dlq_sizes]
    return await serve(cfg.server, [app.handlers()], [app], tasks, metrics=metrics)


if __name__ == "__main__":
    run(main)
