"""The live side of the API: the dashboard's files and its server-sent events.

* :class:`DashboardFiles`: the files of ``api/dashboard/`` (hand-written HTML, CSS and
  JavaScript, no CDN: a fleet's operator may have no internet), read once at start;
  only names in that flat folder are served, so no path leaves it.
* :class:`SnapshotFeed`: ``GET /events``, one ``snapshot`` event (``api/snapshot.py``)
  when a client connects and then each time the snapshot changes, checked every
  :data:`POLL_S`; a comment line every :data:`KEEPALIVE_S` so that proxies and the
  browser keep the stream open. One snapshot is computed per poll for all open
  streams (each dashboard does not cost the node a snapshot of its own). A stream
  ends after :data:`STREAM_LIFETIME_S` (the browser reconnects after the ``retry``
  the stream announced) and at most :data:`MAX_STREAMS` are open at once, so that
  dashboards that vanished without closing their connection cannot hold the API's
  connections (``api/server.py``: 64) for the minutes TCP takes to notice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from importlib import resources
from typing import Any

from edgechain.api.node_interface import NodeInterface
from edgechain.api.snapshot import compute_snapshot

POLL_S = 0.5
KEEPALIVE_S = 15.0
STREAM_LIFETIME_S = 300.0
MAX_STREAMS = 16
RETRY_MS = 1000
"""What the stream tells the browser to wait before reconnecting."""
DASHBOARD_FOLDER = "dashboard"
"""Beside this module (``pyproject.toml`` ships it as package data)."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
EVENT_STREAM = "text/event-stream"


class DashboardFiles:
    """The dashboard's files by name, with their content types."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        folder = resources.files("edgechain.api") / DASHBOARD_FOLDER
        for entry in folder.iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and suffix in CONTENT_TYPES:
                self.files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])

    def get(self, name: str) -> tuple[bytes, str] | None:
        """The file ``name`` (a bare name of the folder) and its type, or None."""
        return self.files.get(name)


def encode_event(name: str, data: Any) -> bytes:
    """One server-sent event: ``event`` and a one-line JSON ``data`` field."""
    text = json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {text}\n\n".encode()


class SnapshotFeed:
    """The snapshot stream of one node; ``stream`` serves one client."""

    def __init__(self, node: NodeInterface) -> None:
        self.node = node
        self._cached: tuple[float, bytes] | None = None
        self.open_streams = 0

    def is_full(self) -> bool:
        return self.open_streams >= MAX_STREAMS

    def get_snapshot(self) -> dict[str, Any]:
        return compute_snapshot(self.node)

    def _get_event(self, now: float) -> bytes:
        cached = self._cached
        if cached is None or now - cached[0] >= POLL_S:
            cached = (now, encode_event("snapshot", self.get_snapshot()))
            self._cached = cached
        return cached[1]

    async def stream(self) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        last: bytes | None = None
        started = quiet_since = loop.time()
        self.open_streams += 1
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            while loop.time() - started < STREAM_LIFETIME_S:
                now = loop.time()
                ready = self.node.get_head_state() is not None
                event = self._get_event(now) if ready else None
                if event is not None and event != last:
                    last = event
                    quiet_since = now
                    yield event
                elif now - quiet_since >= KEEPALIVE_S:
                    quiet_since = now
                    yield b": keepalive\n\n"
                await asyncio.sleep(POLL_S)
        finally:
            self.open_streams -= 1
