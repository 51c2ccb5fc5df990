"""The one small interface every application runtime implements (DESIGN.md, "Runtimes").

A runtime runs the apps the accepted plans put on this node and takes part in their
migration (paper §3.3): ``save`` freezes an app and writes its state to an archive,
``restore`` unpacks such an archive on another node and starts the app there. The
origin keeps its copy until the destination acknowledges, so ``save`` never deletes
anything: ``resume`` undoes it (the migration failed), ``remove`` ends it (the
destination runs the app now).

Archive format, shared by both runtimes: an uncompressed tar whose members live under
``state/`` (the app's state directory) plus, for the container runtime when the
destination lacks the base image, one ``image.tar`` member (``docker save`` output).
Compression belongs to the transfer (``runtime/transfer.py``), not to the archive.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from edgechain.chain.command_encoding import decode_app_spec, encode_app_spec
from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.errors import LocalError, PeerError
from edgechain.runtime.durable_files import write_atomically
from edgechain.runtime.lease import RUNTIME_PAUSED_FILE
from edgechain.types import AppId

CHECKPOINT_ACK_ENV = "EDGECHAIN_CHECKPOINT_ACK"
"""Path the app touches to acknowledge a cooperative checkpoint (SIGUSR1)."""

CHECKPOINT_MARKER = ".checkpoint-hook"
"""A file of this name in the state dir says the app implements the checkpoint hook."""

ARCHIVE_STATE_PREFIX = "state"
ARCHIVE_IMAGE_MEMBER = "image.tar"

SPEC_FILE = "spec"
"""In an app's directory: the canonical encoding of the spec it was last started with."""
VERSION_FILE = "version"
"""Next to it: that spec's version; absent when unknown (restored from a migration,
which carries no version)."""


class AppRuntimeError(LocalError):
    """A runtime operation failed on this node (our side, not a peer's fault)."""


class AppNotFoundError(AppRuntimeError):
    """No app with that id on this runtime."""


class AppStatus(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    """Frozen in memory (SIGSTOP / cgroup freezer); ``resume`` continues it at once."""
    STOPPED = "stopped"
    """Not running; its state directory is kept, ``resume`` starts it again."""
    FROZEN = "frozen"
    """Stopped by the fencing watchdog, not by the runtime: the node's lease expired
    (``runtime/watchdog.py``). Held here but never continued by the runtime; only the
    watchdog thaws it, and ``stop`` kills it outright (it may be a stale copy)."""


@dataclass(frozen=True)
class AppStats:
    """One sample of an app's resource use (paper §3.2's resource vector, per app).

    Shares are integer basis points of the whole host (``chain.model.BASIS_POINTS``):
    ``cpu_bp`` is the CPU time used since the previous sample divided by the wall time
    times the host's core count.
    """

    app: AppId
    cpu_bp: int
    ram_bp: int
    rss_bytes: int
    disk_bytes: int
    """Size of the app's state directory (what a migration carries)."""
    status: AppStatus
    net_bytes_per_s: int = 0
    """Network bytes sent and received per second since the previous sample: a
    container's own interfaces, a process app's TCP sockets (``runtime/net_traffic.py``)."""


@dataclass(frozen=True)
class AppInfo:
    """An app this runtime holds, as listed by ``AppRuntime.list``."""

    app: AppId
    name: str
    status: AppStatus
    exit_code: int | None = None
    """How its last run ended when it ended on its own (the exit status; negative: the
    signal that killed it); None while it runs, once the runtime stopped it, or when
    the runtime cannot tell."""
    last_output: str = ""
    """With ``exit_code``: the last line the run wrote (its log's tail, for people:
    "why" beside "exit code 2"); empty when there is none or the runtime keeps no log."""


@dataclass(frozen=True)
class SavedState:
    """What ``save`` produced: an archive file ready to stream to the destination."""

    app: AppId
    archive: Path
    raw_bytes: int
    """Size of the archive file (uncompressed)."""
    live: bool
    """True: the app is frozen in memory at the origin (``resume`` is instant).
    False: it was stopped gracefully (``resume`` restarts it from its state dir)."""
    includes_image: bool
    delta: bool = False
    """The file is a pre-copy's final state delta (``runtime/precopy.py``), not an
    archive; it is the caller's to delete."""


@runtime_checkable
class AppRuntime(Protocol):
    """Start, stop, pause, resume, stats, save, restore and list the apps of one node.

    Every method is blocking; the app manager and the transfers call them through
    ``runtime/threads.run_in_thread``.
    Implementations are safe to call from any thread.
    """

    @property
    def kind(self) -> RuntimeKind: ...

    @property
    def kinds(self) -> frozenset[RuntimeKind]:
        """The runtime kinds it runs (one, or several for a node's set of runtimes)."""
        ...

    def start(self, app: AppId, spec: AppSpec) -> None:
        """Run ``spec`` as ``app``, reusing its state directory if one exists."""
        ...

    def stop(self, app: AppId) -> None:
        """Stop the app gracefully, keeping its state (``resume`` starts it again)."""
        ...

    def pause(self, app: AppId) -> None:
        """Freeze the app in memory."""
        ...

    def resume(self, app: AppId) -> None:
        """Undo ``pause``, ``stop`` or ``save``: the app runs again on this node."""
        ...

    def stats(self, app: AppId) -> AppStats: ...

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        """Freeze or stop the app and archive its state; the app's copy stays here."""
        ...

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        """Unpack an archive from ``save`` (another node's) and start the app."""
        ...

    def remove(self, app: AppId) -> None:
        """Stop the app and delete everything it had here (after a migration)."""
        ...

    def list(self) -> tuple[AppInfo, ...]: ...

    def is_running(self, app: AppId) -> bool:
        """True when the app is running or paused here (not stopped, not absent)."""
        ...

    def has_image(self, spec: AppSpec) -> bool:
        """True when this node can start ``spec`` without receiving its base image."""
        ...

    def close(self) -> None:
        """Stop every app and release the runtime; leaves no process behind."""
        ...


@runtime_checkable
class RetiringRuntime(Protocol):
    """A runtime that can end an app handed over by a migration and keep its state.

    The origin keeps the state as it handed it over until the chain's move is deep: a
    reorg that reverts the MIGRATE places the app here again, and it restarts from
    that state instead of from nothing (``runtime/manager.py`` deletes it later).
    """

    def retire(self, app: AppId) -> None: ...


@runtime_checkable
class PrecopyRuntime(Protocol):
    """A runtime whose apps' state can be copied while they run, then handed over by
    what changed (``runtime/precopy.py``), and started from a staged copy."""

    def get_precopy_dirs(self, app: AppId) -> tuple[Path, Path] | None:
        """The app's state dir (read while it runs) and a scratch dir only this node
        writes (for delta files); None when this app cannot be pre-copied."""
        ...

    def freeze(self, app: AppId) -> bool:
        """Checkpoint and freeze, or stop, the app for a handover, as ``save`` does but
        without archiving; True when frozen in memory. ``resume`` undoes it."""
        ...

    def can_restore_staged(self, spec: AppSpec) -> bool:
        """True when ``restore_staged`` can start an app of ``spec``."""
        ...

    def restore_staged(self, app: AppId, spec: AppSpec, staged: Path) -> None:
        """Start the app from the state dir ``staged`` (moved into place, root's and
        private until then), as ``restore`` does from an archive."""
        ...


KEPT_LOGS_DIR = "app-logs"
"""Beside a runtime root: the logs of apps whose copy left this node."""


def is_held(runtime: AppRuntime, app: AppId) -> bool:
    """Blocking: whether ``runtime`` holds a copy of ``app``, running or not."""
    return any(info.app == app for info in runtime.list())


def get_app_dirname(app: AppId) -> str:
    """The directory name of an app under a runtime root: its id in hex."""
    return bytes(app).hex()


class AppDirectories:
    """Where a runtime keeps each app: ``<root>/<app id hex>/state`` (shared layout),
    and the release (spec, version) it last started there, which outlives the node."""

    root: Path

    def get_app_dir(self, app: AppId) -> Path:
        return self.root / get_app_dirname(app)

    def get_state_dir(self, app: AppId) -> Path:
        return self.get_app_dir(app) / "state"

    def get_kept_logs_dir(self) -> Path:
        """Where the logs of apps whose copy left this node are kept
        (``runtime/app_log.keep_log``): beside ``root``, so no app listing meets them."""
        return self.root.parent / KEPT_LOGS_DIR

    def get_kept_log(self, app: AppId) -> Path:
        return self.get_kept_logs_dir() / f"{get_app_dirname(app)}.log"

    def mark_paused(self, app: AppId, paused: bool) -> None:
        """Tell the fencing watchdog whether the runtime itself keeps the app paused
        (``pause``, a live ``save``): it never thaws such an app."""
        marker = self.get_app_dir(app) / RUNTIME_PAUSED_FILE
        if paused:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def is_marked_paused(self, app: AppId) -> bool:
        return (self.get_app_dir(app) / RUNTIME_PAUSED_FILE).exists()

    def write_release(self, app: AppId, spec: AppSpec, version: int | None) -> None:
        app_dir = self.get_app_dir(app)
        write_atomically(app_dir / SPEC_FILE, encode_app_spec(spec))
        if version is None:
            (app_dir / VERSION_FILE).unlink(missing_ok=True)
        else:
            write_atomically(app_dir / VERSION_FILE, f"{version}\n".encode())

    def read_releases(
        self, kind: RuntimeKind | None = None
    ) -> Iterator[tuple[AppId, AppSpec, int | None]]:
        """The apps under ``root`` with a readable recorded release, in id order; only
        those of runtime ``kind`` when given (the runtimes of a node share ``root``)."""
        for spec_file in sorted(self.root.glob(f"*/{SPEC_FILE}")):
            try:
                app = AppId(bytes.fromhex(spec_file.parent.name))
            except ValueError:
                continue  # not an app directory
            if len(app) != 32 or get_app_dirname(app) != spec_file.parent.name:
                continue
            release = self.read_release(app)
            if release is not None and (kind is None or release[0].runtime is kind):
                yield app, *release

    def read_release(self, app: AppId) -> tuple[AppSpec, int | None] | None:
        """The spec and version recorded for ``app`` here, None when there is none (or
        it is unreadable: an older format is left alone)."""
        app_dir = self.get_app_dir(app)
        try:
            spec = decode_app_spec((app_dir / SPEC_FILE).read_bytes())
        except (OSError, PeerError):
            return None
        try:
            version: int | None = int((app_dir / VERSION_FILE).read_text().strip())
        except (OSError, ValueError):
            version = None
        return spec, version
