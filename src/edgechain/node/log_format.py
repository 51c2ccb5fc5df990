"""The node's log format: one JSON object per line (time, level, message, fields), written
by :class:`~edgechain.telemetry.logs.JsonLogFormatter` (events: ``telemetry/logs.py``)."""

from __future__ import annotations

import logging

from edgechain.telemetry.logs import JsonLogFormatter

__all__ = ["JsonLogFormatter", "configure_logging"]


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
