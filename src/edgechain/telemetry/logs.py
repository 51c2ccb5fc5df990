"""Structured log events: one helper writes an event's fields, one formatter reads them.

A node logs one JSON object per line (:class:`JsonLogFormatter`): time, level,
message, then the event's own fields (``{"t": ..., "level": "info", "msg": "vdf done",
"slot": 12, "ms": 840}``). The fields travel on the log record under one attribute,
:data:`FIELDS_ATTR`. Call sites used to build that by hand,
``log.info("vdf done", extra={"fields": {...}})``: a misspelt key in ``extra`` just
sets another record attribute, which the formatter never reads, so a typo lost the
event's fields without a sound. Here the fields are keyword arguments, and this module
is the only place that knows the attribute::

    from edgechain.telemetry import logs

    logs.info(log, "vdf done", slot=request.slot, ms=elapsed)
    try:
        ...
    except OSError:
        logs.log_exception(log, "cannot bind the transfer port", port=port)

The logger, level and message are positional-only, so a field may have any name that
is an identifier (one that is not, like ``from``, goes in as ``**{"from": source}``).
Every record's location (``funcName``, ``lineno``) is the caller's, not this module's
(``stacklevel``). A level the logger does not log costs the call and nothing else.

Below every layer, like ``telemetry/cpu.py``: it imports only the standard library.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

__all__ = [
    "FIELDS_ATTR",
    "JsonLogFormatter",
    "debug",
    "error",
    "get_fields",
    "info",
    "log_event",
    "log_exception",
    "warning",
]

FIELDS_ATTR: Final = "fields"
"""The log record attribute holding an event's fields (a ``dict[str, object]``)."""

_CALLER: Final = 3
"""``stacklevel`` for a record made in :func:`_emit`: the frame that called the public
helper (``_emit`` is 1, the helper 2)."""


def _emit(
    logger: logging.Logger,
    level: int,
    message: str,
    fields: dict[str, object],
    exc_info: BaseException | bool = False,
) -> None:
    logger.log(level, message, exc_info=exc_info, extra={FIELDS_ATTR: fields}, stacklevel=_CALLER)


def log_event(logger: logging.Logger, level: int, message: str, /, **fields: object) -> None:
    """Log ``message`` at ``level`` with ``fields`` (each one key of the JSON line)."""
    _emit(logger, level, message, fields)


def debug(logger: logging.Logger, message: str, /, **fields: object) -> None:
    _emit(logger, logging.DEBUG, message, fields)


def info(logger: logging.Logger, message: str, /, **fields: object) -> None:
    _emit(logger, logging.INFO, message, fields)


def warning(logger: logging.Logger, message: str, /, **fields: object) -> None:
    _emit(logger, logging.WARNING, message, fields)


def error(logger: logging.Logger, message: str, /, **fields: object) -> None:
    _emit(logger, logging.ERROR, message, fields)


def log_exception(
    logger: logging.Logger, message: str, exc: BaseException | None = None, /, **fields: object
) -> None:
    """Log at ERROR with a traceback: of ``exc`` when given, else of the exception being
    handled (call it in an ``except`` block, like ``Logger.exception``)."""
    _emit(logger, logging.ERROR, message, fields, exc if exc is not None else True)


def get_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields an event was logged with (empty for a plain ``log.info(...)``)."""
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, dict) else {}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, the event's fields, and the
    traceback (``exc``) of a record logged with one. Values JSON cannot hold are
    written as their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        entry.update(get_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)
