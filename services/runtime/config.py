"""Typed configuration from environment variables, for frozen-dataclass configs.

Each service declares one frozen dataclass (or a few nested ones) and builds it with
`load(cls, "PREFIX", **defaults)` in its `from_env()`. Every field maps to
`<PREFIX>_<FIELD_NAME>` (or the name given with `setting(env=...)`). Values are parsed by the
field's annotation; a bad value raises ConfigError naming the variable, so startup stops
before anything opens. Secrets (`secret(dev_default)`) have a default only when
SHOPMESH_ENV=dev (the default): in any other environment a missing secret stops startup.

Imports only the stdlib.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

ENV_VAR = "SHOPMESH_ENV"
_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def environment(environ: Mapping[str, str] | None = None) -> str:
    """The deployment environment: dev (default), test, staging, prod..."""
    env = os.environ if environ is None else environ
    return env.get(ENV_VAR, "dev").strip().lower() or "dev"


def setting(default: Any = _MISSING, *, env: str | None = None, help: str = "") -> Any:
    """A config field with an explicit env name and/or a description (for the config table)."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help})


def secret(dev_default: str | None = None, *, env: str | None = None, help: str = "") -> Any:
    """A secret: `dev_default` applies only when SHOPMESH_ENV=dev, never elsewhere."""
    return dataclasses.field(
        default="",
        metadata={"env": env, "help": help, "secret": True, "dev_default": dev_default},
    )


def env_name(prefix: str, f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("env") or f"{prefix}_{f.name.upper()}"


def _parse(var: str, raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # Optional[X]: empty string means None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if raw.strip() == "" else _parse(var, raw, args[0])
    if origin is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        return tuple(_parse(var, p.strip(), item) for p in raw.split(",") if p.strip())
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r}: expected a boolean (true/false)")
    if typ is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected an integer") from None
    if typ is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected a number") from None
    if typ is str:
        return raw
    raise ConfigError(f"{var}: unsupported config type {typ!r}")


def load(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None, **defaults: Any) -> T:
    """Build `cls` from `<prefix>_<FIELD>` variables; `defaults` override the class defaults
    (so one shared dataclass, e.g. ServerConfig, gets per-service default ports)."""
    env = os.environ if environ is None else environ
    dev = environment(env) == "dev"
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = env_name(prefix, f)
        raw = env.get(var)
        if raw is not None:
            value = _parse(var, raw, hints[f.name])
            if f.metadata.get("secret") and not value:
                raise ConfigError(f"{var}: secret must not be empty")
            values[f.name] = value
        elif f.metadata.get("secret"):
            default = defaults.get(f.name, f.metadata.get("dev_default"))
            if not dev or default is None:
                raise ConfigError(
                    f"{var} is required (a secret has no default outside {ENV_VAR}=dev)"
                )
            values[f.name] = default
        elif f.name in defaults:
            values[f.name] = defaults[f.name]
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"{var} is required")
    return cls(**values)


def check_port(var: str, value: int) -> None:
    """Ports are validated here so a typo (PORT=0, 70000) stops startup, naming the variable."""
    if not 0 < value < 65536:
        raise ConfigError(f"{var}={value}: not a TCP port")


def describe(cls: type[Any], prefix: str) -> list[tuple[str, str, str]]:
    """(variable, default, help) rows: the config table in docs and `--help`."""
    rows = []
    for f in dataclasses.fields(cls):
        default = (
            "<secret>"
            if f.metadata.get("secret")
            else ("" if f.default is _MISSING else repr(f.default))
        )
        rows.append((env_name(prefix, f), default, f.metadata.get("help", "")))
    return rows
