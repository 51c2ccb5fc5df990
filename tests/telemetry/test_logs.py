"""Structured log events through the real JSON formatter (``telemetry/logs.py``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from edgechain.errors import RejectReason
from edgechain.node.log_format import JsonLogFormatter as NodeFormatter
from edgechain.telemetry import logs
from edgechain.telemetry.logs import FIELDS_ATTR, JsonLogFormatter


class Capture:
    """A logger whose records go through :class:`JsonLogFormatter` into a buffer."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.stream = io.StringIO()
        self.records: list[logging.LogRecord] = []
        capture = self

        class Handler(logging.StreamHandler[io.StringIO]):
            def emit(self, record: logging.LogRecord) -> None:
                capture.records.append(record)
                super().emit(record)

        self.handler = Handler(self.stream)
        self.handler.setFormatter(JsonLogFormatter())

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def capture() -> Iterator[Capture]:
    logger = logging.getLogger("edgechain.test.logs")
    cap = Capture(logger)
    logger.addHandler(cap.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield cap
    finally:
        logger.removeHandler(cap.handler)


def test_an_event_is_one_json_line_with_its_fields(capture: Capture) -> None:
    logs.info(capture.logger, "vdf done", slot=12, ms=840, reason=RejectReason.BAD_VDF)
    text = capture.stream.getvalue()
    assert text.count("\n") == 1
    (line,) = capture.lines()
    assert set(line) == {"t", "level", "msg", "slot", "ms", "reason"}
    assert line["level"] == "info" and line["msg"] == "vdf done"
    assert (line["slot"], line["ms"], line["reason"]) == (12, 840, "bad_vdf")
    assert isinstance(line["t"], float)


def test_each_level_and_odd_field_names(capture: Capture) -> None:
    log = capture.logger
    logs.debug(log, "a", level_hint=1)
    logs.warning(log, "b")
    logs.error(log, "c", path=capture)  # not JSON: written as its str
    logs.log_event(log, logging.INFO, "d", message="a field", logger="another", **{"from": "x"})
    lines = capture.lines()
    assert [(x["level"], x["msg"]) for x in lines] == [
        ("debug", "a"),
        ("warning", "b"),
        ("error", "c"),
        ("info", "d"),
    ]
    assert lines[0]["level_hint"] == 1 and set(lines[1]) == {"t", "level", "msg"}
    assert lines[2]["path"].startswith("<")
    named = lines[3]
    assert (named["message"], named["logger"], named["from"]) == ("a field", "another", "x")


def test_a_level_not_logged_writes_nothing(capture: Capture) -> None:
    capture.logger.setLevel(logging.INFO)
    logs.debug(capture.logger, "hidden", slot=1)
    assert capture.stream.getvalue() == ""


def test_the_record_names_the_caller_not_the_helper(capture: Capture) -> None:
    logs.info(capture.logger, "here")
    logs.log_event(capture.logger, logging.INFO, "there")
    try:
        raise ValueError("boom")
    except ValueError:
        logs.log_exception(capture.logger, "failed")
    for record in capture.records:
        assert record.funcName == "test_the_record_names_the_caller_not_the_helper"
        assert record.pathname == __file__


def test_exceptions_carry_their_traceback(capture: Capture) -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        logs.log_exception(capture.logger, "store failed", data_dir="/tmp/x")
    error = RuntimeError("task died")
    logs.log_exception(capture.logger, "task failed", error, app="ab12")
    handled, given = capture.lines()
    assert (handled["level"], handled["msg"], handled["data_dir"]) == (
        "error",
        "store failed",
        "/tmp/x",
    )
    assert handled["exc"].startswith("Traceback (most recent call last)")
    assert "OSError: [Errno 28] No space left on device" in handled["exc"]
    assert (given["msg"], given["app"]) == ("task failed", "ab12")
    assert given["exc"].strip().endswith("RuntimeError: task died")


def test_plain_logging_calls_still_format(capture: Capture) -> None:
    capture.logger.info("plain %s", "message")
    capture.logger.info("by hand", extra={FIELDS_ATTR: {"slot": 3}})
    capture.logger.warning("stack", stack_info=True)
    plain, by_hand, stack = capture.lines()
    assert set(plain) == {"t", "level", "msg"} and plain["msg"] == "plain message"
    assert by_hand["slot"] == 3
    assert stack["stack"].startswith("Stack (most recent call last)")


def test_the_node_formats_with_this_formatter() -> None:
    assert NodeFormatter is JsonLogFormatter
