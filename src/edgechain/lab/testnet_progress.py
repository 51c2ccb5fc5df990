"""What the testnet launcher shows while it runs: its log lines (``launcher.log``, and
stderr unless quiet) and the live progress line on stderr (:func:`format_progress`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

QUIET_PROGRESS_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Progress:
    """What the live line shows."""

    elapsed_s: float
    nodes: int
    up: int
    target_slots: int
    genesis: bool = False
    slot: int = 0
    head_slot: int | None = None
    validators: int = 0
    skip_blocks: int = 0
    down: int = 0


def format_progress(p: Progress) -> str:
    up = f"up {p.up}/{p.nodes}" + (f" ({p.down} down)" if p.down else "")
    if not p.genesis:
        return f"testnet  waiting for genesis | {up} | {p.elapsed_s:5.1f}s"
    head = "-" if p.head_slot is None else str(p.head_slot)
    target = f"/{p.target_slots}" if p.target_slots else " (Ctrl-C stops)"
    return (
        f"testnet  slot {p.slot}{target}  head {head} | {up} | "
        f"validators {p.validators} | skip blocks {p.skip_blocks} | {p.elapsed_s:5.1f}s"
    )


class LaunchOutput:
    """The launcher's log and progress line. The line is redrawn in place on a terminal,
    else written as its own line every ``QUIET_PROGRESS_INTERVAL_S``; a log line ends it
    first."""

    def __init__(self, stderr: TextIO, progress: bool, started_at: float) -> None:
        self.stderr = stderr
        self.progress = progress
        self.started_at = started_at
        self._log_file: TextIO | None = None
        self._progress_shown = False
        self._last_quiet_progress = 0.0

    def open_log(self, path: Path) -> None:
        self._log_file = path.open("a")

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started_at
        line = f"[{elapsed:7.1f}s] {message}"
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()
        if self.progress and not message.startswith("started "):
            self.end_progress_line()
            self.stderr.write(line + "\n")
            self.stderr.flush()

    def show_progress(self, progress: Progress) -> None:
        line = format_progress(progress)
        if self.stderr.isatty():
            self.stderr.write("\r" + line + "\x1b[K")
            self._progress_shown = True
        elif time.monotonic() - self._last_quiet_progress >= QUIET_PROGRESS_INTERVAL_S:
            self._last_quiet_progress = time.monotonic()
            self.stderr.write(line + "\n")
        self.stderr.flush()

    def end_progress_line(self) -> None:
        if self._progress_shown:
            self.stderr.write("\n")
            self._progress_shown = False
