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
this project's VMs, the state-directory path above is the one used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
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
    get_app_dirname,
)
from edgechain.runtime.process_group import compute_cpu_bp
from edgechain.types import AppId

STATE_MOUNT = "/state"
LABEL_APP = "edgechain.app"
LABEL_NAME = "edgechain.name"
LABEL_NODE = "edgechain.node"
SAVED_ARCHIVE = "saved.tar"
IMAGE_FILE = "image.tar"
CRIU_CHECK_TIMEOUT_S = 20.0


@functools.cache
def is_criu_available() -> bool:
    """True only when ``criu check`` passes on this host (checked once, never assumed)."""
    criu = shutil.which("criu")
    if criu is None:
        return False
    try:
        done = subprocess.run(
            [criu, "check"], capture_output=True, timeout=CRIU_CHECK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _get_status(container: Any) -> AppStatus:
    state = str(container.status)
    if state == "running":
        return AppStatus.RUNNING
    if state == "paused":
        return AppStatus.PAUSED
    return AppStatus.STOPPED


class ContainerRuntime(AppDirectories):
    """``AppRuntime`` for containers on a Docker-API engine (Docker or Podman)."""

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
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if client is None:
            import docker

            client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        self.client = client
        self.node_tag = node_tag or hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.stop_grace_s = stop_grace_s
        self.network_mode = network_mode
        self.criu_available = is_criu_available() if detect_criu else False
        self._lock = threading.Lock()
        self._app_locks: dict[AppId, threading.RLock] = {}
        self._specs: dict[AppId, AppSpec] = {}
        self._samples: dict[AppId, tuple[float, int]] = {}

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.CONTAINER

    # --- naming and lookup ---------------------------------------------------------------

    def get_container_name(self, app: AppId) -> str:
        return f"edgechain-{self.node_tag}-{get_app_dirname(app)[:16]}"

    def _get_lock(self, app: AppId) -> threading.RLock:
        with self._lock:
            lock = self._app_locks.get(app)
            if lock is None:
                lock = self._app_locks[app] = threading.RLock()
            return lock

    def _find(self, app: AppId) -> Any | None:
        import docker.errors

        try:
            return self.client.containers.get(self.get_container_name(app))
        except docker.errors.NotFound:
            return None

    def _get(self, app: AppId) -> Any:
        container = self._find(app)
        if container is None:
            raise AppNotFoundError(f"no container for app {bytes(app).hex()[:16]}")
        return container

    # --- container control ---------------------------------------------------------------

    def _run(self, app: AppId, spec: AppSpec) -> None:
        import docker.errors

        if not spec.image:
            raise AppRuntimeError(f"app {spec.name!r} names no image for the container runtime")
        if not self.has_image(spec):
            raise AppRuntimeError(f"image {spec.image!r} is not present on this node")
        state_dir = self.get_state_dir(app)
        state_dir.mkdir(parents=True, exist_ok=True)
        stale = self._find(app)
        if stale is not None:
            stale.remove(force=True)
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "detach": True,
            "name": self.get_container_name(app),
            "labels": {
                LABEL_APP: get_app_dirname(app),
                LABEL_NAME: spec.name,
                LABEL_NODE: self.node_tag,
            },
            "environment": {
                STATE_DIR_ENV: STATE_MOUNT,
                CHECKPOINT_ACK_ENV: "",
            },
            "volumes": {str(state_dir): {"bind": STATE_MOUNT, "mode": "rw"}},
        }
        if self.network_mode:
            kwargs["network_mode"] = self.network_mode
        try:
            self.client.containers.run(spec.image, **kwargs)
        except docker.errors.DockerException as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        with self._lock:
            self._specs[app] = spec
            self._samples.pop(app, None)

    # --- the AppRuntime interface --------------------------------------------------------

    def start(self, app: AppId, spec: AppSpec) -> None:
        with self._get_lock(app):
            container = self._find(app)
            if container is not None and _get_status(container) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running")
            self._run(app, spec)

    def stop(self, app: AppId) -> None:
        with self._get_lock(app):
            container = self._get(app)
            if _get_status(container) is AppStatus.PAUSED:
                container.unpause()
            container.stop(timeout=self.stop_grace_s)

    def pause(self, app: AppId) -> None:
        with self._get_lock(app):
            container = self._get(app)
            if _get_status(container) is not AppStatus.RUNNING:
                raise AppRuntimeError("can only pause a running app")
            container.pause()

    def resume(self, app: AppId) -> None:
        with self._get_lock(app):
            (self.get_app_dir(app) / SAVED_ARCHIVE).unlink(missing_ok=True)
            container = self._get(app)
            status = _get_status(container)
            if status is AppStatus.PAUSED:
                container.unpause()
            elif status is AppStatus.STOPPED:
                container.start()

    def stats(self, app: AppId) -> AppStats:
        with self._get_lock(app):
            container = self._get(app)
            status = _get_status(container)
            cpu_bp, rss = 0, 0
            if status is not AppStatus.STOPPED:
                sample = container.stats(stream=False, one_shot=True)
                cpu_ns = int(sample.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0))
                rss = int(sample.get("memory_stats", {}).get("usage", 0) or 0)
                now = time.monotonic()
                with self._lock:
                    previous = self._samples.get(app)
                    self._samples[app] = (now, cpu_ns)
                if previous is not None:
                    cpu_bp = compute_cpu_bp((cpu_ns - previous[1]) / 1e9, now - previous[0])
            total = _get_host_memory()
            ram_bp = min(BASIS_POINTS, rss * BASIS_POINTS // max(1, total))
            disk = get_tree_size(self.get_state_dir(app))
            return AppStats(app, cpu_bp, ram_bp, rss, disk, status)

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        with self._get_lock(app):
            container = self._get(app)
            status = _get_status(container)
            if status is AppStatus.RUNNING:
                container.pause()  # freeze: the state dir stops changing
            live = status is not AppStatus.STOPPED
            app_dir = self.get_app_dir(app)
            image_tar = app_dir / IMAGE_FILE if include_image else None
            try:
                if image_tar is not None:
                    self._write_image(container, image_tar)
                archive = app_dir / SAVED_ARCHIVE
                size = write_state_archive(self.get_state_dir(app), archive, image_tar)
            except BaseException:
                self.resume(app)
                raise
            finally:
                if image_tar is not None:
                    image_tar.unlink(missing_ok=True)
            return SavedState(app, archive, size, live, includes_image=include_image)

    def _write_image(self, container: Any, out: Path) -> None:
        # ``docker save`` by the reference the container was created from, so the
        # destination loads it under that same name (Image.save would use its first tag).
        reference = container.attrs["Config"]["Image"]
        with out.open("wb") as sink:
            for chunk in self.client.api.get_image(reference):
                sink.write(chunk)

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        import docker.errors

        with self._get_lock(app):
            container = self._find(app)
            if container is not None and _get_status(container) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running here")
            app_dir = self.get_app_dir(app)
            app_dir.mkdir(parents=True, exist_ok=True)
            image_tar = app_dir / IMAGE_FILE
            try:
                if extract_state_archive(archive, self.get_state_dir(app), image_tar):
                    with image_tar.open("rb") as source:
                        self.client.images.load(source)
                self._run(app, spec)
            except docker.errors.DockerException as exc:
                self._forget(app)
                raise AppRuntimeError(f"cannot restore {spec.name!r}: {exc}") from exc
            except BaseException:
                self._forget(app)
                raise
            finally:
                image_tar.unlink(missing_ok=True)

    def remove(self, app: AppId) -> None:
        with self._get_lock(app):
            self._forget(app)

    def _forget(self, app: AppId) -> None:
        container = self._find(app)
        if container is not None:
            container.remove(force=True)
        shutil.rmtree(self.get_app_dir(app), ignore_errors=True)
        with self._lock:
            self._specs.pop(app, None)
            self._samples.pop(app, None)

    def _list_containers(self) -> list[Any]:
        mine = {"label": f"{LABEL_NODE}={self.node_tag}"}
        return list(self.client.containers.list(all=True, filters=mine))

    def list(self) -> tuple[AppInfo, ...]:
        out = []
        for container in self._list_containers():
            labels = container.labels or {}
            try:
                app = AppId(bytes.fromhex(labels.get(LABEL_APP, "")))
            except ValueError:
                continue  # not one of ours
            out.append(AppInfo(app, labels.get(LABEL_NAME, ""), _get_status(container)))
        return tuple(out)

    def is_running(self, app: AppId) -> bool:
        container = self._find(app)
        return container is not None and _get_status(container) is not AppStatus.STOPPED

    def has_image(self, spec: AppSpec) -> bool:
        import docker.errors

        try:
            self.client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def close(self) -> None:
        """Remove this node's containers (their state dirs stay) and close the client."""
        with contextlib.suppress(Exception):
            for container in self._list_containers():
                with contextlib.suppress(Exception):
                    container.remove(force=True)
        self.client.close()

    def __enter__(self) -> ContainerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get_host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
