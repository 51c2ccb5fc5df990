"""The bytes of recently encoded immutable objects, by object identity.

Chain objects are frozen, and a node encodes the same ones again and again: a block it
stores and serves, the hundred reports of the canonical state behind every block's
``state_root`` (issue 13's CPU budget: at 100 nodes a node re-encoded each state's
reports for every block, and each block it served twice). Remembering an object's bytes
by ``id`` is exact only while the object lives, so each entry holds a weak reference to
it and goes when the object does: an id is never reused while it is remembered, and the
cache keeps nothing alive. Until session 32 each entry held the object itself, and the
reports cache (4096 entries) kept every report a node had encoded until it was full: a
20-node testnet at 1 s slots grew by about 5 MB of superseded reports between slot 200
and slot 1000 (``benchmarks/flat_memory.py``). Bounded too, least recently used first
out. Pure: the cache changes how often bytes are computed, never which bytes.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RecentEncodings(Generic[T]):
    """At most ``limit`` live objects' encodings, the least recently used dropped first.

    The objects must support weak references (frozen dataclasses without ``__slots__``
    do). An object's death runs the weak reference's callback at once (CPython), before
    its id can be reused; the identity check in :meth:`get` stays as a guard.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[weakref.ref[T], bytes]] = OrderedDict()

    def get(self, obj: T) -> bytes | None:
        key = id(obj)
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not obj:
            return None
        # Dropped meanwhile (by another thread): the bytes are still right.
        with contextlib.suppress(KeyError):
            self._entries.move_to_end(key)
        return entry[1]

    def put(self, obj: T, data: bytes) -> None:
        key = id(obj)
        self._entries[key] = (weakref.ref(obj, self._get_forget(key)), data)
        with contextlib.suppress(KeyError):  # as in get
            self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            with contextlib.suppress(KeyError):  # emptied meanwhile
                self._entries.popitem(last=False)

    def _get_forget(self, key: int) -> Callable[[weakref.ref[T]], None]:
        entries = self._entries

        def forget(ref: weakref.ref[T]) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                entries.pop(key, None)

        return forget

    def __len__(self) -> int:
        return len(self._entries)
