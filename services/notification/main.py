"""Notification service entry point: `python -m services.notification.main`."""

from __future__ import annotations

from services.notification.bootstrap import NotificationApp
from services.notification.config import NotificationConfig
from services.runtime.metrics import Metrics
from services.runtime.server import run, serve


async def main() -> int:
    cfg = NotificationConfig.from_env()
    metrics = Metrics("notification")
    app = NotificationApp(cfg, metrics)
    return await serve(cfg.server, [app.handlers()], [app], [app.consume], metrics=metrics)


if __name__ == "__main__":
    run(main)
