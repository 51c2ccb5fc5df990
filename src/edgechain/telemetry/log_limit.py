"""One log line per interval for an event that repeats: the first is logged, then at most
one per ``interval_s``, each counting the ones it stands for.

Reconcile retries about once a second, so a failing app start (``runtime/restart_backoff.py``)
or a start that waits for an expired lease (``runtime/app_starter.py``) would log every
second, forever: a node cut off for an hour logged 3,600 lines per app. Both ask one
:class:`LogLimit` per app.

Pure: ``now`` is the caller's (monotonic seconds). Below every layer, like ``logs.py``.
"""

from __future__ import annotations


class LogLimit:
    """When an event was last logged, and how often it happened since."""

    __slots__ = ("_logged_at", "_unlogged", "interval_s")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._logged_at: float | None = None
        self._unlogged = 0

    def take(self, now: float) -> int | None:
        """The event happened at ``now``: None when it is not to be logged (counted for
        the next line), else how many were not logged since the last line."""
        if self._logged_at is not None and now - self._logged_at < self.interval_s:
            self._unlogged += 1
            return None
        unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        return unlogged
