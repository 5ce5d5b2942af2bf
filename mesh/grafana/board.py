"""Building blocks of a dashboard: the panel grid (_Board) with its stat, time-series and
table panels, and the Prometheus datasource they query.
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH = 24


class _Board:
    """Lays panels out left to right, rows of height 8."""

    def __init__(self, uid: str, title: str, tags: list[str]) -> None:
        self.uid, self.title, self.tags = uid, title, tags
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.h = 8
        self.templating: list[dict[str, Any]] = []

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y = 0, self.y + self.h
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        unit: str = "short",
        width: int = 8,
        kind: str = "timeseries",
    ) -> None:
        if self.x + width > WIDTH:
            self.x, self.y = 0, self.y + self.h
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "datasource": DATASOURCE,
                "gridPos": {"h": self.h, "w": width, "x": self.x, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self.x += width

    def render(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": self.tags,
            "editable": False,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-30m", "to": "now"},
            "refresh": "10s",
            "timezone": "utc",
            "templating": {"list": self.templating},
            "annotations": {"list": []},
            "panels": self.panels,
        }
