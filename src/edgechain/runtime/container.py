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
Running, ending and discarding the containers themselves is the job of its base,
``ContainerControl`` (``runtime/container_control.py``).

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

import secrets
import time
from pathlib import Path

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.app_log import LogTail
from edgechain.runtime.archive import extract_state_archive, get_tree_size, write_state_archive
from edgechain.runtime.base import AppInfo, AppRuntimeError, AppStats, AppStatus, SavedState
from edgechain.runtime.checkpoint import (
    SAVED_ARCHIVE,
    SNAPSHOT_PREFIX,
    StateSnapshot,
    write_archive_locked_out,
)
from edgechain.runtime.container_control import ContainerControl
from edgechain.runtime.container_engine import (
    get_last_output,
    get_leader_pid,
    get_log_tail,
    get_own_exit_code,
    get_status,
)
from edgechain.runtime.lease import PID_FILE
from edgechain.runtime.net_traffic import is_own_netns, read_netns_bytes
from edgechain.runtime.process_group import GroupUsage, compute_cpu_bp
from edgechain.runtime.state_quota import discard_state_quota
from edgechain.runtime.usage import get_host_memory
from edgechain.types import AppId

IMAGE_FILE = "image.tar"


class ContainerRuntime(ContainerControl):
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
            ram_bp = min(BASIS_POINTS, rss * BASIS_POINTS // get_host_memory())
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

    def remove(self, app: AppId) -> None:
        with self._get_lock(app):
            self._forget(app)

    def list(self) -> tuple[AppInfo, ...]:
        """This node's containers, and the container apps recorded here whose container
        is gone (stopped: a node restart, a removed container; their state is kept)."""
        found = {}
        for app, name, container in self.engine.list_mine():
            status = self._observe(app, container)
            pid_file = self.get_app_dir(app) / PID_FILE  # _end, a stop of ours, removes it
            code = get_own_exit_code(container, pid_file)
            said = get_last_output(container) if code is not None else ""
            found[app] = AppInfo(app, name, status, code, said)
        for app, spec, _ in self.read_releases(RuntimeKind.CONTAINER):
            found.setdefault(app, AppInfo(app, spec.name, AppStatus.STOPPED))
        return tuple(found[app] for app in sorted(found))

    def is_running(self, app: AppId) -> bool:
        container = self.engine.find(app)
        return container is not None and get_status(container) is not AppStatus.STOPPED

    def get_release(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The spec the app was last started with, and its version when known."""
        return self._release_or_raise(app)

    def get_log_tail(self, app: AppId, lines: int) -> LogTail | None:
        """The end of the app's output as the engine kept it (None: no container)."""
        container = self.engine.find(app)
        return get_log_tail(container, lines) if container is not None else None

    def set_version(self, app: AppId, version: int) -> None:
        with self._get_lock(app):
            spec, _ = self._release_or_raise(app)
            self.write_release(app, spec, version)

    def __enter__(self) -> ContainerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
