"""Compatibility levels and modes, globally and per subject (Confluent's /config and /mode):
the settings use cases, and the lookups the other use cases make of them. A base class of
`registry.service.Registry`, which holds the store.
"""

from __future__ import annotations

from typing import Any

from registry.compatibility import DEFAULT_LEVEL, Level
from registry.errors import (
    InvalidCompatibilityLevel,
    InvalidMode,
    OperationNotPermitted,
    SubjectConfigNotFound,
    SubjectModeNotFound,
)
from registry.ports import Store, StoreTx

MODES = ("READWRITE", "READONLY", "IMPORT")
DEFAULT_MODE = "READWRITE"


def parse_level(raw: object) -> Level:
    if not isinstance(raw, str):
        raise InvalidCompatibilityLevel(raw)
    try:
        return Level(raw.upper())
    except ValueError:
        raise InvalidCompatibilityLevel(raw) from None


class RegistrySettings:
    """The settings half of Registry (`self.store` is the Registry's)."""

    store: Store

    # ---- settings ------------------------------------------------------------------
    async def _level(self, tx: StoreTx, subject: str) -> Level:
        raw = await tx.get_setting("compatibility", subject) or await tx.get_setting(
            "compatibility", None
        )
        return Level(raw) if raw else DEFAULT_LEVEL

    async def _mode(self, tx: StoreTx, subject: str | None) -> str:
        raw = None
        if subject is not None:
            raw = await tx.get_setting("mode", subject)
        return raw or await tx.get_setting("mode", None) or DEFAULT_MODE

    async def _require_writable(self, tx: StoreTx, subject: str | None) -> str:
        mode = await self._mode(tx, subject)
        if mode == "READONLY":
            raise OperationNotPermitted(f"Subject {subject} is in read-only mode")
        return mode

    # ---- config and mode -----------------------------------------------------------
    async def get_config(
        self, subject: str | None, *, default_to_global: bool = False
    ) -> dict[str, str]:
        async with self.store.read() as tx:
            value = await tx.get_setting("compatibility", subject)
            if value is None and subject is not None:
                if not default_to_global:
                    raise SubjectConfigNotFound(subject)
                value = await tx.get_setting("compatibility", None)
        return {"compatibilityLevel": value or DEFAULT_LEVEL.value}

    async def set_config(self, subject: str | None, body: dict[str, Any]) -> dict[str, str]:
        level = parse_level(body.get("compatibility", body.get("compatibilityLevel")))
        async with self.store.write(subject) as tx:
            await self._require_writable(tx, subject)
            await tx.set_setting("compatibility", subject, level.value)
        return {"compatibility": level.value}

    async def delete_config(self, subject: str | None) -> dict[str, str]:
        async with self.store.write(subject) as tx:
            await self._require_writable(tx, subject)
            old = await tx.get_setting("compatibility", subject)
            if old is None and subject is not None:
                raise SubjectConfigNotFound(subject)
            await tx.set_setting("compatibility", subject, None)
        return {"compatibilityLevel": old or DEFAULT_LEVEL.value}

    async def get_mode(
        self, subject: str | None, *, default_to_global: bool = False
    ) -> dict[str, str]:
        async with self.store.read() as tx:
            if subject is None:
                return {"mode": await self._mode(tx, None)}
            value = await tx.get_setting("mode", subject)
            if value is None:
                if not default_to_global:
                    raise SubjectModeNotFound(subject)
                value = await self._mode(tx, None)
        return {"mode": value}

    async def set_mode(
        self, subject: str | None, body: dict[str, Any], *, force: bool = False
    ) -> dict[str, str]:
        mode = body.get("mode")
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise InvalidMode(mode)
        mode = mode.upper()
        async with self.store.write(subject) as tx:
            if mode == "IMPORT" and not force:
                has = (await tx.versions(subject)) if subject else await tx.subjects()
                if has:
                    raise OperationNotPermitted("Cannot import since found existing subjects")
            await tx.set_setting("mode", subject, mode)
        return {"mode": mode}

    async def delete_mode(self, subject: str) -> dict[str, str]:
        async with self.store.write(subject) as tx:
            old = await tx.get_setting("mode", subject)
            if old is None:
                raise SubjectModeNotFound(subject)
            await tx.set_setting("mode", subject, None)
        return {"mode": old}
