"""The JSON log lines a service writes, captured in-process as the service would write them.

`JsonLines` is a root logging handler formatting each record with the runtime's
JsonFormatter at emit time, so the lines carry the trace id of the call that logged them,
exactly as on a service's stderr.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from services.runtime.logs import JsonFormatter


class JsonLines(logging.Handler):
    def __init__(self, service: str, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.setFormatter(JsonFormatter(service))
        self.lines: list[str] = []
        self._root_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> JsonLines:
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(self.level)
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]
