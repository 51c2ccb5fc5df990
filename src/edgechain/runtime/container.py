"""The container runtime, through the Docker Engine API (DESIGN.md, "Runtimes").

Works against Docker or a Podman API service (``docker.DockerClient(base_url=
"unix:///...")``; ``runtime/podman.py`` starts a private one). Each app is one
container named ``edgechain-<node tag>-<app id prefix>`` and labelled with its node
tag, so several runtimes (nodes) can share one engine. Its state lives in a host
directory ``<root>/<app id hex>/state`` bind-mounted at ``/state``
(``EDGECHAIN_STATE_DIR``): the contract of a stateful app is to keep its state there.

Migration (paper §3.3, §4.2, Table 3). The paper's standard path stops the container,
commits and exports the whole image (median 142.2 MB) and compresses it; its CRIU path
pauses the container and ships only the process state (median 15.2 MB). Here ``save``
pauses the container (the cgroup freezer: nothing runs, nothing writes) and archives
only the state directory, so the payload is CRIU-sized without needing CRIU; the
destination starts a fresh container from the base image it already has, with the state
unpacked into its bind directory. Only when the destination lacks the base image does
the origin add it (``docker save``) to the archive. A failed migration unpauses the
container: it continues in memory, having lost nothing.

CRIU itself (``docker checkpoint``) needs a kernel that passes ``criu check``; that is
detected at start-up (``criu_available``), never assumed. On hosts where it fails, as on
this project's VMs, the state-directory path above is the one used. What the runtime
asks of the engine (its containers by app, their status, images) is in
``runtime/container_engine.py``.

In a node (``runtime/runtimes.py``) it shares the process runtime's layout under
``<data_dir>/apps``: each app directory records the spec and version it was last
started with (``AppDirectories``, read back after a restart: an app whose container is
gone is listed as stopped, state kept), and the container's init process, which runc
makes the leader of its own session and process group, is recorded in its ``pid`` file
like a process app's leader. So the fencing watchdog (``runtime/watchdog.py``) freezes a
container's processes when the node's lease expires exactly as it freezes process apps,
without talking to the engine, and ``paused`` marks the containers this runtime paused
itself (the engine's freezer), which the watchdog never thaws. A running container
whose leader is stopped though the runtime did not pause it is ``FROZEN``: never
continued, only killed.

Apps never run as root: a root node runs each container as its app user (``nobody`` by
default, the same account as process apps), which owns the bind-mounted state directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.appuser import DEFAULT_APP_USER, AppUser, give_tree, resolve_app_user
from edgechain.runtime.archive import extract_state_archive, get_tree_size, write_state_archive
from edgechain.runtime.base import (
    CHECKPOINT_ACK_ENV,
    STATE_DIR_ENV,
    AppDirectories,
    AppInfo,
    AppNotFoundError,
    AppRuntimeError,
    AppStats,
    AppStatus,
    SavedState,
)
from edgechain.runtime.checkpoint import (
    SAVED_ARCHIVE,
    SNAPSHOT_PREFIX,
    StateSnapshot,
    write_archive_locked_out,
)
from edgechain.runtime.container_engine import (
    EngineContainers,
    get_leader_pid,
    get_own_exit_code,
    get_status,
    is_criu_available,
    open_engine_client,
)
from edgechain.runtime.container_limits import ContainerLimitsError, get_container_limits
from edgechain.runtime.lease import PID_FILE
from edgechain.runtime.net_traffic import TrafficMeter, is_own_netns, read_netns_bytes
from edgechain.runtime.process_group import GroupCensus, GroupUsage, compute_cpu_bp, is_stopped
from edgechain.runtime.spawner import write_pid_file
from edgechain.runtime.state_quota import (
    StateQuotaError,
    apply_state_quota,
    discard_state_quota,
    unmount_state_quota,
)
from edgechain.types import AppId

STATE_MOUNT = "/state"
IMAGE_FILE = "image.tar"


class ContainerRuntime(AppDirectories):
    """``AppRuntime`` for containers on a Docker-API engine (Docker or Podman).

    ``app_user`` (``USER`` or ``USER:GROUP``): who containers run as when this process
    is root (root itself is refused, as for process apps); a node that is not root runs
    them as its own uid. ``network_mode``: the engine's network for every container
    (``none``: no network, the default of a node; ``host``; a named network).
    ``allow_root``: the node's operator lets specs that ask for it run as root inside
    their container (``--allow-root-containers``); otherwise such a spec is refused.
    ``census``: the ``/proc`` census to measure with (the node shares the process
    runtime's: one pass serves both). Each container gets the spec's CPU, memory and
    pids limits from the engine
    (``runtime/container_limits.py``) and its state dir its size limit
    (``runtime/state_quota.py``)."""

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

    # --- the AppRuntime interface --------------------------------------------------------

    def start(self, app: AppId, spec: AppSpec, *, version: int | None = None) -> None:
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is not None and get_status(container) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running")
            self._run(app, spec, version)

    def stop(self, app: AppId) -> None:
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is None:
                self._release_or_raise(app)
                return
            self._end(app, container, grace_s=self.stop_grace_s)

    def _release_or_raise(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The app's recorded release; ``AppNotFoundError`` when it has none here."""
        release = self.read_release(app)
        if release is None or release[0].runtime is not RuntimeKind.CONTAINER:
            raise AppNotFoundError(f"no container app {bytes(app).hex()[:16]} here")
        return release

    def pause(self, app: AppId) -> None:
        with self._get_lock(app):
            container = self.engine.get(app)
            status = self._observe(app, container)
            if status is AppStatus.FROZEN:
                raise AppRuntimeError("cannot pause an app frozen by the fencing watchdog")
            if status is not AppStatus.RUNNING:
                raise AppRuntimeError("can only pause a running app")
            self.mark_paused(app, True)  # before the freeze: the watchdog must not thaw it
            container.pause()

    def resume(self, app: AppId) -> None:
        with self._get_lock(app):
            (self.get_app_dir(app) / SAVED_ARCHIVE).unlink(missing_ok=True)
            container = self.engine.find(app)
            if container is None:
                spec, version = self._release_or_raise(app)
                self._run(app, spec, version)
                return
            status = self._observe(app, container)
            if status is AppStatus.PAUSED:
                container.unpause()
                self.mark_paused(app, False)
            elif status is AppStatus.STOPPED:
                spec, version = self._release_or_raise(app)
                self._run(app, spec, version)

    def stats(self, app: AppId) -> AppStats:
        """CPU and resident memory of the container's processes (its init's process
        group) from the same one-pass ``/proc`` census as process apps: no engine call
        per app and sample, and the same measure as a process app's; its network
        traffic from its own namespace's interfaces (``runtime/net_traffic.py``)."""
        with self._get_lock(app):
            container = self.engine.get(app)
            status = self._observe(app, container)
            cpu_bp, rss, net = 0, 0, 0
            pid = get_leader_pid(container)
            if status is not AppStatus.STOPPED and pid > 0:
                now, usage = self.census.get(pid)
                cpu_s = usage.cpu_s if usage is not None else 0.0
                rss = usage.rss if usage is not None else 0
                with self._lock:
                    previous = self._samples.get(app)
                    self._samples[app] = (now, cpu_s, pid)
                if previous is not None and previous[2] == pid:
                    cpu_bp = compute_cpu_bp(cpu_s - previous[1], now - previous[0])
                net = self.traffic.get_rate(app, now, self._get_traffic(pid, usage))
            total = _get_host_memory()
            ram_bp = min(BASIS_POINTS, rss * BASIS_POINTS // max(1, total))
            disk = get_tree_size(self.get_state_dir(app))
            return AppStats(app, cpu_bp, ram_bp, rss, disk, status, net)

    def _get_traffic(self, pid: int, usage: GroupUsage | None) -> dict[int, int]:
        """Counters of the container's traffic: its own network namespace's interfaces,
        or, on the node's namespace (host networking), its TCP sockets, since those
        interfaces are the host's."""
        if not is_own_netns(pid):
            return self.census.get_tcp_bytes(usage) if usage is not None else {}
        total = read_netns_bytes(pid)
        return {0: total} if total is not None else {}

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        with self._get_lock(app):
            container = self.engine.get(app)
            status = self._observe(app, container)
            if status is AppStatus.FROZEN:
                # A stale copy: never archived live, killed (its state as it stands).
                self._end(app, container, grace_s=0)
            elif status is AppStatus.RUNNING:
                self.mark_paused(app, True)
                container.pause()  # freeze: the state dir stops changing
            live = status in (AppStatus.RUNNING, AppStatus.PAUSED)
            app_dir = self.get_app_dir(app)
            image_tar = app_dir / IMAGE_FILE if include_image else None
            archive = app_dir / SAVED_ARCHIVE
            try:
                if image_tar is not None:
                    self.engine.write_image(container, image_tar)
                    size = write_state_archive(self.get_state_dir(app), archive, image_tar)
                else:
                    state = self.get_state_dir(app)
                    size = write_archive_locked_out(state, archive, self.app_user)
            except BaseException:
                self.resume(app)
                raise
            finally:
                if image_tar is not None:
                    image_tar.unlink(missing_ok=True)
            return SavedState(app, archive, size, live, includes_image=include_image)

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        """Unpack and start; the spec version is unknown here (``set_version``)."""
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is not None and get_status(container) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running here")
            app_dir = self.get_app_dir(app)
            app_dir.mkdir(parents=True, exist_ok=True)
            image_tar = app_dir / IMAGE_FILE
            try:
                # The archive replaces the state: an image holding an older one goes.
                discard_state_quota(self.get_state_dir(app))
                if extract_state_archive(archive, self.get_state_dir(app), image_tar):
                    self._load_image(image_tar)
                # Unpacked by root, in a directory no app could write: owned wholesale.
                self._run(app, spec, None, fresh_state=True)
            except BaseException:
                self._forget(app)
                raise
            finally:
                image_tar.unlink(missing_ok=True)

    def snapshot(self, app: AppId) -> StateSnapshot:
        """Copy the app's state for a replica while it runs on: the container is paused
        (the engine's freezer) while its state dir is archived, then unpaused; a
        container that is not running is archived as it stands and left so."""
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is None:
                self._release_or_raise(app)
            running = container is not None and self._observe(app, container) is AppStatus.RUNNING
            if not running:
                container = None
            archive = self.get_app_dir(app) / f"{SNAPSHOT_PREFIX}{secrets.token_hex(4)}.tar"
            start = time.perf_counter()
            if container is not None:
                self.mark_paused(app, True)
                container.pause()
            try:
                size = write_archive_locked_out(self.get_state_dir(app), archive, self.app_user)
            except BaseException:
                archive.unlink(missing_ok=True)
                raise
            finally:
                if container is not None:
                    container.unpause()
                    self.mark_paused(app, False)
            paused_ms = (time.perf_counter() - start) * 1000.0 if running else 0.0
            return StateSnapshot(app, archive, size, paused_ms, frozen=running)

    def retire(self, app: AppId) -> None:
        """End a handed-over app's container with SIGKILL alone (frozen for the save, it
        must never run again here) and keep its directory: ``RetiringRuntime``."""
        with self._get_lock(app):
            container = self.engine.find(app)
            if container is not None:
                self._end(app, container, grace_s=0)
                with contextlib.suppress(Exception):
                    _discard(container)

    def remove(self, app: AppId) -> None:
        with self._get_lock(app):
            self._forget(app)

    def _forget(self, app: AppId) -> None:
        container = self.engine.find(app)
        if container is not None:
            _discard(container)
        with contextlib.suppress(StateQuotaError):
            discard_state_quota(self.get_state_dir(app))  # a mount point is not removable
        shutil.rmtree(self.get_app_dir(app), ignore_errors=True)
        with self._lock:
            self._samples.pop(app, None)
        self.traffic.forget(app)

    def _load_image(self, tar: Path) -> None:
        try:
            self.engine.load_image(tar)
        except Exception as exc:  # the engine's errors and its transport's
            raise AppRuntimeError(f"cannot load the image a migration brought: {exc}") from exc

    def list(self) -> tuple[AppInfo, ...]:
        """This node's containers, and the container apps recorded here whose container
        is gone (stopped: a node restart, a removed container; their state is kept)."""
        found = {}
        for app, name, container in self.engine.list_mine():
            status = self._observe(app, container)
            pid_file = self.get_app_dir(app) / PID_FILE  # _end, a stop of ours, removes it
            found[app] = AppInfo(app, name, status, get_own_exit_code(container, pid_file))
        for app, spec, _ in self.read_releases(RuntimeKind.CONTAINER):
            found.setdefault(app, AppInfo(app, spec.name, AppStatus.STOPPED))
        return tuple(found[app] for app in sorted(found))

    def is_running(self, app: AppId) -> bool:
        container = self.engine.find(app)
        return container is not None and get_status(container) is not AppStatus.STOPPED

    def has_image(self, spec: AppSpec) -> bool:
        return self.engine.has_image(spec.image)

    def get_release(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The spec the app was last started with, and its version when known."""
        return self._release_or_raise(app)

    def set_version(self, app: AppId, version: int) -> None:
        with self._get_lock(app):
            spec, _ = self._release_or_raise(app)
            self.write_release(app, spec, version)

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

    def __enter__(self) -> ContainerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _get_host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
