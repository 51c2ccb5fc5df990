"""The engine side of the container runtime (``runtime/container.py``).

:class:`ContainerControl` is :class:`~edgechain.runtime.container.ContainerRuntime`'s
base: its set-up (the arguments are described there), each app's lock and observed
status, and running, ending, retiring and discarding the containers themselves, with
their state directories, pid files and paused marks. The ``AppRuntime`` calls built on
it are in ``runtime/container.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.chain.read_auth import MAX_TAIL_LINES
from edgechain.runtime.app_log import keep_output
from edgechain.runtime.app_processes import STATE_DIR_ENV
from edgechain.runtime.appuser import DEFAULT_APP_USER, AppUser, give_tree, resolve_app_user
from edgechain.runtime.base import (
    CHECKPOINT_ACK_ENV,
    AppDirectories,
    AppNotFoundError,
    AppRuntimeError,
    AppStatus,
)
from edgechain.runtime.container_engine import (
    EngineContainers,
    get_leader_pid,
    get_status,
    is_criu_available,
    open_engine_client,
    read_output,
)
from edgechain.runtime.container_limits import ContainerLimitsError, get_container_limits
from edgechain.runtime.lease import PID_FILE
from edgechain.runtime.net_traffic import TrafficMeter
from edgechain.runtime.process_group import GroupCensus, is_stopped
from edgechain.runtime.spawner import write_pid_file
from edgechain.runtime.state_quota import (
    StateQuotaError,
    apply_state_quota,
    discard_state_quota,
    unmount_state_quota,
)
from edgechain.types import AppId

_log = logging.getLogger("edgechain.runtime")

STATE_MOUNT = "/state"


class ContainerControl(AppDirectories):
    """One node's containers on a Docker-API engine: the set-up, each app's lock,
    running, ending and discarding containers. The ``AppRuntime`` calls, and what the
    arguments mean, are :class:`~edgechain.runtime.container.ContainerRuntime`'s."""

    def __init__(
        self,
        root: Path,
        *,
        base_url: str | None = None,
        client: Any = None,
        node_tag: str = "",
        stop_grace_s: int = 2,
        network_mode: str | None = None,
        detect_criu: bool = True,
        app_user: str | None = DEFAULT_APP_USER,
        ping: bool = False,
        allow_root: bool = False,
        census: GroupCensus | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if client is None:
            client = open_engine_client(base_url, ping=ping)
        self.node_tag = node_tag or hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.engine = EngineContainers(client, self.node_tag)
        self.stop_grace_s = stop_grace_s
        self.network_mode = network_mode
        self.criu_available = is_criu_available() if detect_criu else False
        self.allow_root = allow_root
        """Whether a spec's ``run_as_root`` is honoured (the node operator's choice)."""
        self.app_user: AppUser | None = (
            resolve_app_user(app_user) if os.geteuid() == 0 and app_user is not None else None
        )
        self._lock = threading.Lock()
        self._app_locks: dict[AppId, threading.RLock] = {}
        self._samples: dict[AppId, tuple[float, float, int]] = {}
        """Per app: (census time, CPU seconds, leader pid) at the previous ``stats``."""
        self.census = census if census is not None else GroupCensus()
        self.traffic = TrafficMeter()

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.CONTAINER

    @property
    def kinds(self) -> frozenset[RuntimeKind]:
        return frozenset({RuntimeKind.CONTAINER})

    def get_user(self) -> str:
        """The ``uid:gid`` containers run as (never 0 when the node is root)."""
        if self.app_user is not None:
            return f"{self.app_user.uid}:{self.app_user.gid}"
        return f"{os.getuid()}:{os.getgid()}"

    # --- naming and lookup ---------------------------------------------------------------

    def get_container_name(self, app: AppId) -> str:
        return self.engine.get_name(app)

    def _get_lock(self, app: AppId) -> threading.RLock:
        with self._lock:
            lock = self._app_locks.get(app)
            if lock is None:
                lock = self._app_locks[app] = threading.RLock()
            return lock

    def _observe(self, app: AppId, container: Any) -> AppStatus:
        """The engine's status, and FROZEN for a running container whose leader the
        fencing watchdog stopped (the runtime did not pause it)."""
        status = get_status(container)
        if status is AppStatus.RUNNING and not self.is_marked_paused(app):
            pid = get_leader_pid(container)
            if pid > 0 and is_stopped(pid):
                return AppStatus.FROZEN
        return status

    # --- container control ---------------------------------------------------------------

    def _prepare_dirs(self, app: AppId, spec: AppSpec, *, fresh_state: bool) -> Path:
        """The app's state dir, given its size limit (``runtime/state_quota.py``) and to
        the user the container runs as."""
        app_dir = self.get_app_dir(app)
        app_dir.mkdir(parents=True, exist_ok=True)
        state_dir = self.get_state_dir(app)
        state_dir.mkdir(exist_ok=True)
        user = None if spec.run_as_root else self.app_user
        try:
            apply_state_quota(
                state_dir,
                spec.state_limit_bytes,
                owner=(user.uid, user.gid) if user is not None else None,
            )
        except StateQuotaError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        if user is not None:
            app_dir.chmod(0o711)  # root's: the container reaches state/ by its mount only
            give_tree(state_dir, user, fresh=fresh_state)
        return state_dir

    def _run(
        self, app: AppId, spec: AppSpec, version: int | None, *, fresh_state: bool = False
    ) -> None:
        if spec.runtime is not RuntimeKind.CONTAINER:
            raise AppRuntimeError(f"app {spec.name!r} is not a container app")
        if not spec.image:
            raise AppRuntimeError(f"app {spec.name!r} names no image for the container runtime")
        if not self.has_image(spec):
            raise AppRuntimeError(f"image {spec.image!r} is not present on this node")
        if spec.run_as_root and not self.allow_root:
            raise AppRuntimeError(
                f"app {spec.name!r} asks to run as root, which this node does not allow "
                "(edgechain node --allow-root-containers)"
            )
        try:
            limits = get_container_limits(spec, user=self.get_user(), host_cpus=os.cpu_count())
        except ContainerLimitsError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        state_dir = self._prepare_dirs(app, spec, fresh_state=fresh_state)
        stale = self.engine.find(app)
        if stale is not None:
            _discard(stale)
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "detach": True,
            "name": self.engine.get_name(app),
            "labels": self.engine.get_labels(app, spec.name),
            "environment": {
                STATE_DIR_ENV: STATE_MOUNT,
                CHECKPOINT_ACK_ENV: "",
            },
            "volumes": {str(state_dir): {"bind": STATE_MOUNT, "mode": "rw"}},
            **limits,
        }
        if self.network_mode:
            kwargs["network_mode"] = self.network_mode
        self.mark_paused(app, False)  # left by an earlier incarnation, if any
        try:
            container = self.engine.run(spec.image, **kwargs)
        except AppRuntimeError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        self._record_leader(app, container)
        self.write_release(app, spec, version)
        with self._lock:
            self._samples.pop(app, None)
        self.traffic.forget(app)

    def _record_leader(self, app: AppId, container: Any) -> None:
        """The container's init in the app's pid file: the watchdog's handle on it."""
        pid = get_leader_pid(container)
        pid_file = self.get_app_dir(app) / PID_FILE
        if pid > 0:
            write_pid_file(pid_file, pid)
        else:
            pid_file.unlink(missing_ok=True)

    def _end(self, app: AppId, container: Any, *, grace_s: int) -> None:
        """Stop the container (SIGKILL at once when frozen or ``grace_s`` is 0: a stale
        copy never runs its SIGTERM handler) and drop its pid file and paused mark."""
        status = self._observe(app, container)
        if status is AppStatus.FROZEN or grace_s == 0:
            with contextlib.suppress(Exception):
                container.kill()
        elif status is AppStatus.PAUSED:
            container.unpause()
        if status is not AppStatus.STOPPED:
            container.stop(timeout=grace_s)
        (self.get_app_dir(app) / PID_FILE).unlink(missing_ok=True)
        self.mark_paused(app, False)

    def _release_or_raise(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The app's recorded release; ``AppNotFoundError`` when it has none here."""
        release = self.read_release(app)
        if release is None or release[0].runtime is not RuntimeKind.CONTAINER:
            raise AppNotFoundError(f"no container app {bytes(app).hex()[:16]} here")
        return release

    def _load_image(self, tar: Path) -> None:
        try:
            self.engine.load_image(tar)
        except Exception as exc:  # the engine's errors and its transport's
            raise AppRuntimeError(f"cannot load the image a migration brought: {exc}") from exc

    def has_image(self, spec: AppSpec) -> bool:
        return self.engine.has_image(spec.image)

    # --- ending containers for good ------------------------------------------------------

    def retire(self, app: AppId) -> None:
        """End a handed-over app's container with SIGKILL alone (frozen for the save, it
        must never run again here) and keep its directory: ``RetiringRuntime``."""
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is not None:
                self._end(app, container, grace_s=0)
                with contextlib.suppress(Exception):
                    _discard(container)

    def _forget(self, app: AppId) -> None:
        container = self.engine.find(app)
        if container is not None:
            # Its log goes with it: keep the end of it, as a process app's is kept.
            try:
                keep_output(read_output(container, MAX_TAIL_LINES), self.get_kept_log(app))
            except (AppRuntimeError, OSError) as exc:
                _log.warning("log of %s not kept: %s", app.hex()[:16], exc)
            _discard(container)
        with contextlib.suppress(StateQuotaError):
            discard_state_quota(self.get_state_dir(app))  # a mount point is not removable
        shutil.rmtree(self.get_app_dir(app), ignore_errors=True)
        with self._lock:
            self._samples.pop(app, None)
        self.traffic.forget(app)

    def close(self) -> None:
        """Remove this node's containers (their state dirs stay) and close the client."""
        with contextlib.suppress(Exception):
            for _, _, container in self.engine.list_mine():
                with contextlib.suppress(Exception):
                    _discard(container)
        for app, _, _ in self.read_releases(RuntimeKind.CONTAINER):
            (self.get_app_dir(app) / PID_FILE).unlink(missing_ok=True)
            with contextlib.suppress(StateQuotaError):
                # The state stays in its image; the next start mounts it again.
                unmount_state_quota(self.get_state_dir(app))
        self.engine.close()


def _discard(container: Any) -> None:
    """Remove a container whatever its state, without letting it run again.

    The engine's forced removal of a *paused* container thaws it before it signals it:
    measured with Podman 4.3, the app ran on for about 8 ms, long enough to write its
    state after the copy at the destination had started from it. ``kill`` on a paused
    container sends SIGKILL first and thaws after, so the frozen processes wake only
    to die. (Killed whatever its cached status says, which may be stale; the engine
    refuses to kill a stopped container, which is then simply removed.)"""
    with contextlib.suppress(Exception):
        container.kill()
    container.remove(force=True)
