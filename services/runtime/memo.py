"""A bounded memo for values that never go stale under their key (a frozen domain value's
reply message, a conversion under an immutable rate version): a plain dict, so a hit is
one C-level `get`, emptied when it reaches its bound rather than kept in LRU order (a hit
then costs nothing extra; refilling the hot keys after a reset is cheap).
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V]):
    """A dict of at most `size` entries: `keep` a new key when full and it starts afresh."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: K, value: V) -> V:
        """Store `value` under `key` and return it."""
        if len(self) >= self.size and key not in self:
            self.clear()
        self[key] = value
        return value
