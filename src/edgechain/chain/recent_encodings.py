"""The bytes of recently encoded immutable objects, by object identity.

Chain objects are frozen, and a node encodes the same ones again and again: a block it
stores and serves, the hundred reports of the canonical state behind every block's
``state_root`` (issue 13's CPU budget: at 100 nodes a node re-encoded each state's
reports for every block, and each block it served twice). Remembering an object's bytes
by ``id`` is exact only while the object lives, so each entry holds the object itself:
an id is never reused while it is remembered. Bounded, least recently used first out.
Pure: the cache changes how often bytes are computed, never which bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class RecentEncodings(Generic[T]):
    """At most ``limit`` objects' encodings, the least recently used dropped first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[T, bytes]] = OrderedDict()

    def get(self, obj: T) -> bytes | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0] is not obj:
            return None
        self._entries.move_to_end(id(obj))
        return entry[1]

    def put(self, obj: T, data: bytes) -> None:
        self._entries[id(obj)] = (obj, data)
        self._entries.move_to_end(id(obj))
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
