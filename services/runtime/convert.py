"""Field-by-name mapping between flat domain value objects (frozen dataclasses) and the
generated protobuf messages of the same shape (shop.common.v1.Address and the like).

Handlers use it for value objects whose fields match the schema one to one, so a field
added to both is mapped without another hand-written line. Anything with renamed or
nested fields keeps an explicit mapping in its handler.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
M = TypeVar("M")


def to_message(message_cls: type[M], value: Any) -> M:
    """The message with each of the dataclass's fields copied by name."""
    return message_cls(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value)})


def from_message(cls: type[T], message: Any) -> T:
    """The dataclass with each of its fields read from the message by name."""
    return cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
