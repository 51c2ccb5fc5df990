"""A node's runtimes: the process runtime always, the container runtime when the node
has a container engine (``edgechain node --container-engine unix:///...``).

:class:`NodeRuntimes` is what the app manager, the transfer client and server and the
replica code hold: one object with the runtime interface (``base.AppRuntime``,
``RetiringRuntime``, ``PrecopyRuntime``, ``replica.SnapshotRuntime``) that sends each
call to the runtime the app's spec names. An app new here (``start``, ``restore``) goes
to the runtime of its spec's kind; every other call goes to the runtime that holds it: the process
runtime when it knows the app, else the one whose kind the app's recorded release names
(both runtimes keep their apps under the same ``<data_dir>/apps`` layout,
``base.AppDirectories``). A container app on a node
without an engine is refused with a clear ``AppRuntimeError``, never run as a process.

The container runtime (and with it the docker SDK and its HTTP stack, several MB per
node) is only imported when an engine is configured: a process-only node does not pay
for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.app_log import LogTail
from edgechain.runtime.appuser import AppUser
from edgechain.runtime.base import (
    AppDirectories,
    AppInfo,
    AppNotFoundError,
    AppRuntimeError,
    AppStats,
    SavedState,
)
from edgechain.runtime.checkpoint import StateSnapshot
from edgechain.runtime.process import ProcessRuntime
from edgechain.types import AppId

if TYPE_CHECKING:
    from edgechain.runtime.container import ContainerRuntime


DEFAULT_CONTAINER_NETWORK = "none"
"""A node's containers get no network unless its operator says otherwise: an app that
serves or calls out is the operator's decision (``host``, ``bridge``, a named one)."""


def open_node_runtimes(
    root: Path,
    app_user: str | None,
    container_engine: str | None = None,
    container_network: str = DEFAULT_CONTAINER_NETWORK,
    *,
    allow_root_containers: bool = False,
) -> NodeRuntimes:
    """The node's runtimes under ``root``; the container runtime only with an engine URL
    (its SDK is imported here, not before). An engine that does not answer is an
    ``AppRuntimeError`` now, not at the first container app."""
    process = ProcessRuntime(root, app_user=app_user)
    if container_engine is None:
        return NodeRuntimes(process)
    from edgechain.runtime.container import ContainerRuntime

    try:
        container = ContainerRuntime(
            root,
            base_url=container_engine,
            network_mode=container_network,
            app_user=app_user,
            ping=True,
            allow_root=allow_root_containers,
            census=process.census,
        )
    except BaseException:
        process.close()
        raise
    return NodeRuntimes(process, container)


class NoContainerEngineError(AppRuntimeError):
    """A container app reached a node that has no container engine configured."""


class NodeRuntimes(AppDirectories):
    """The process runtime, and the container runtime when ``container`` is given;
    they share ``process.root``."""

    def __init__(self, process: ProcessRuntime, container: ContainerRuntime | None = None):
        if container is not None and container.root != process.root:
            raise AppRuntimeError("a node's runtimes must share one apps directory")
        self.root = process.root
        self.process = process
        self.container = container

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.PROCESS

    @property
    def kinds(self) -> frozenset[RuntimeKind]:
        return self.process.kinds | (self.container.kinds if self.container else frozenset())

    @property
    def app_user(self) -> AppUser | None:
        return self.process.app_user

    @property
    def unusable_reason(self) -> str:
        return self.process.unusable_reason

    def get_runtime(self, kind: RuntimeKind) -> ProcessRuntime | ContainerRuntime:
        """The runtime for apps of ``kind``; ``NoContainerEngineError`` when this node
        has none."""
        if kind is RuntimeKind.PROCESS:
            return self.process
        if kind is RuntimeKind.CONTAINER and self.container is not None:
            return self.container
        raise NoContainerEngineError(
            f"this node runs no {kind.name.lower()} apps (no container engine configured: "
            "edgechain node --container-engine unix:///PATH)"
        )

    def _holder(self, app: AppId) -> ProcessRuntime | ContainerRuntime:
        """The runtime holding ``app``: the process runtime knows its apps in memory
        (those of an earlier incarnation too); any other app's recorded release names
        its kind (read from disk only for those)."""
        if self.process.holds(app):
            return self.process
        release = self.read_release(app)
        if release is not None:
            return self.get_runtime(release[0].runtime)
        raise AppNotFoundError(f"no app {bytes(app).hex()[:16]} on this node")

    # --- the runtime interface, dispatched -------------------------------------------------

    def start(self, app: AppId, spec: AppSpec, *, version: int | None = None) -> None:
        self.get_runtime(spec.runtime).start(app, spec, version=version)

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        self.get_runtime(spec.runtime).restore(app, spec, archive)

    def has_image(self, spec: AppSpec) -> bool:
        return self.get_runtime(spec.runtime).has_image(spec)

    def stop(self, app: AppId) -> None:
        self._holder(app).stop(app)

    def pause(self, app: AppId) -> None:
        self._holder(app).pause(app)

    def resume(self, app: AppId) -> None:
        self._holder(app).resume(app)

    def stats(self, app: AppId) -> AppStats:
        return self._holder(app).stats(app)

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        return self._holder(app).save(app, include_image=include_image)

    def snapshot(self, app: AppId) -> StateSnapshot:
        return self._holder(app).snapshot(app)

    def retire(self, app: AppId) -> None:
        self._holder(app).retire(app)

    # Pre-copy (``runtime/precopy.py``): process apps only; a container's state dir may
    # be a quota mount that a staged tree cannot be renamed onto.

    def get_precopy_dirs(self, app: AppId) -> tuple[Path, Path] | None:
        holder = self._holder(app)
        return holder.get_precopy_dirs(app) if holder is self.process else None

    def freeze(self, app: AppId) -> bool:
        return self.process.freeze(app)

    def can_restore_staged(self, spec: AppSpec) -> bool:
        return self.process.can_restore_staged(spec)

    def restore_staged(self, app: AppId, spec: AppSpec, staged: Path) -> None:
        self.process.restore_staged(app, spec, staged)

    def remove(self, app: AppId) -> None:
        try:
            holder = self._holder(app)
        except AppRuntimeError:
            # Nothing recorded, or a container app on a node that lost its engine: the
            # process runtime only deletes the app's directory then.
            holder = self.process
        holder.remove(app)
        if holder is not self.process:
            self.process.list_kept_logs()  # a container's kept log, in the same place

    def get_kept_logs(self) -> frozenset[AppId]:
        """The apps whose log this node kept after their copy left (a container's
        too: both runtimes keep them in one place)."""
        return self.process.get_kept_logs()

    def discard_log(self, app: AppId) -> None:
        """Delete the log kept of the app here, whatever its runtime: it left the
        chain."""
        self.process.discard_log(app)

    def get_release(self, app: AppId) -> tuple[AppSpec, int | None]:
        return self._holder(app).get_release(app)

    def set_version(self, app: AppId, version: int) -> None:
        self._holder(app).set_version(app, version)

    def get_log_tail(self, app: AppId, lines: int) -> LogTail | None:
        """The end of the app's output on this node; None when it has none here."""
        try:
            return self._holder(app).get_log_tail(app, lines)
        except AppNotFoundError:
            return self.process.get_log_tail(app, lines)  # a log left without a release

    def is_running(self, app: AppId) -> bool:
        try:
            return self._holder(app).is_running(app)
        except AppNotFoundError:
            return False

    def is_known_empty(self) -> bool:
        """True when this node holds no app and that is known without blocking: the
        process runtime's table is in memory, a container engine must be asked.

        The app manager's rounds list and measure the apps about once a second, each in a
        worker thread (a listing may wait on an app's start, or on the engine). On a node
        with no app those two threads did nothing but wake the loop twice more a second;
        with this, an empty node's rounds skip them (issue 13's CPU budget)."""
        return self.container is None and self.process.is_empty()

    def list(self) -> tuple[AppInfo, ...]:
        listed = list(self.process.list())
        if self.container is not None:
            listed.extend(self.container.list())
        return tuple(sorted(listed, key=lambda info: bytes(info.app)))

    def close(self) -> None:
        try:
            self.process.close()
        finally:
            if self.container is not None:
                self.container.close()
