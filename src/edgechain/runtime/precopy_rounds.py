"""The origin's pre-copy over an open migration connection: the rounds while the app
runs, then the frozen final round (``runtime/precopy.py`` holds the why).

``TransferClient`` calls :func:`send_running_rounds` after a VERDICT that offers
pre-copy, and :func:`save_final_round` (blocking, in a thread) in place of
``AppRuntime.save``: the result is a ``SavedState`` whose file is the final delta, so
the rest of the migration (stream, RECEIVED, DONE, recovery) is the plain one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgechain.runtime.archive import get_tree_size
from edgechain.runtime.base import AppRuntime, PrecopyRuntime, SavedState
from edgechain.runtime.precopy import (
    PrecopyUnsupportedError,
    SentFile,
    is_converged,
    write_round,
)
from edgechain.runtime.protocol import Begin
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer_common import (
    PayloadStream,
    ProgressCallback,
    TransferTimeouts,
    ms_since,
    send_payload,
)
from edgechain.types import AppId

ROUND_FILE = "precopy.delta"
"""In the app's scratch dir: the delta of the round being sent."""
FINAL_FILE = "precopy-final.delta"
"""In the app's scratch dir: the final round's delta (deleted after the migration)."""


@dataclass(frozen=True)
class PrecopyDone:
    """The rounds sent while the app ran."""

    state_dir: Path
    scratch_dir: Path
    files: Mapping[str, SentFile]
    """What the destination holds now."""
    rounds: int
    compressed_bytes: int
    elapsed_ms: float


def get_precopy_dirs(runtime: AppRuntime, app: AppId, min_bytes: int) -> tuple[Path, Path] | None:
    """Blocking: the app's (state dir, scratch dir) when it should be pre-copied: its
    runtime can, and its state is at least ``min_bytes``; else None."""
    if not isinstance(runtime, PrecopyRuntime):
        return None
    dirs = runtime.get_precopy_dirs(app)
    if dirs is None or get_tree_size(dirs[0]) < min_bytes:
        return None
    return dirs


async def send_running_rounds(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    dirs: tuple[Path, Path],
    timeouts: TransferTimeouts,
    zstd_level: int,
    on_progress: ProgressCallback | None = None,
) -> PrecopyDone:
    """Send pre-copy rounds until they converge (``precopy.is_converged``); the app runs
    throughout. Raises ``PrecopyUnsupportedError`` (nothing sent yet, or the destination
    drops what it staged once a plain archive follows), ``PeerError`` or ``OSError``."""
    state_dir, scratch = dirs
    start = time.perf_counter()
    out = scratch / ROUND_FILE
    files: Mapping[str, SentFile] = {}
    rounds = compressed = 0
    previous: int | None = None
    try:
        while True:
            done = await run_in_thread(write_round, state_dir, files, out, final=False)
            stream = PayloadStream(on_progress)
            begin = Begin(done.delta_bytes, False, delta=True)
            await send_payload(
                reader, writer, out, begin, stream, timeouts, zstd_level, expect_done=False
            )
            files, rounds = done.files, rounds + 1
            compressed += stream.compressed_bytes
            if is_converged(rounds, done.changed_bytes, previous):
                break
            previous = done.changed_bytes
    finally:
        out.unlink(missing_ok=True)
    return PrecopyDone(state_dir, scratch, files, rounds, compressed, ms_since(start))


def save_final_round(
    runtime: AppRuntime, app: AppId, done: PrecopyDone, *, include_image: bool
) -> SavedState:
    """Blocking, in place of ``runtime.save``: freeze (or stop) the app and write the
    final delta against what the rounds sent. A state that now holds what a delta
    cannot carry is archived the plain way instead (the destination drops its staged
    rounds). On any other failure the app is resumed and the error raised."""
    if not isinstance(runtime, PrecopyRuntime):
        raise TypeError("save_final_round needs a PrecopyRuntime")
    live = runtime.freeze(app)
    out = done.scratch_dir / FINAL_FILE
    try:
        final = write_round(done.state_dir, done.files, out, final=True)
    except PrecopyUnsupportedError:
        out.unlink(missing_ok=True)
        return runtime.save(app, include_image=include_image)  # archives it as it stands
    except BaseException:
        out.unlink(missing_ok=True)
        runtime.resume(app)
        raise
    return SavedState(app, out, final.delta_bytes, live, includes_image=False, delta=True)
