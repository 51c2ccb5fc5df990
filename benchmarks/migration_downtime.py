"""Downtime of a migration as the app sees it (issue 15, item 6): from the counter app's
last progress at the origin to its first progress at the destination.

A thread polls the ``count`` file of the counter app (``apps/counter/counter.sh``) in
both state directories every ``poll_s`` (1 ms) and records each change it sees. After
the migration the origin's last value is the one the app was frozen or stopped with;
the destination's first progress is the first value above it (a stale count left there
by an earlier run is below it). The figure's resolution is the poll period plus the
counter's step interval at both ends: a counter stepping every 20 ms may have made its
last step up to 20 ms before the freeze, which counts as downtime here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


def read_count_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DowntimeWatch:
    """Polls ``origin`` and ``destination`` count files from a thread while open."""

    def __init__(self, origin: Path, destination: Path, poll_s: float = 0.001) -> None:
        self.paths = (origin, destination)
        self.poll_s = poll_s
        self.changes: tuple[list[tuple[float, int]], list[tuple[float, int]]] = ([], [])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DowntimeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last: list[int | None] = [None, None]
        while not self._stop.is_set():
            for side, path in enumerate(self.paths):
                value = read_count_file(path)
                if value is not None and value != last[side]:
                    self.changes[side].append((time.perf_counter(), value))
                    last[side] = value
            time.sleep(self.poll_s)

    def has_progressed(self) -> bool:
        """True once the destination counted past the origin's last value."""
        return self.get_downtime_ms() is not None

    def get_downtime_ms(self) -> float | None:
        """Last origin progress to first destination progress past it, or None."""
        origin, destination = self.changes
        if not origin:
            return None
        stopped_at, final = origin[-1]
        for seen_at, value in list(destination):
            if value > final:
                return (seen_at - stopped_at) * 1000.0
        return None
