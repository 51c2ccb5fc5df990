"""A node's view of its container engine (Docker Engine API: Docker or Podman).

:class:`EngineContainers` is all the container runtime (``runtime/container.py``) asks of
the engine: the node's containers by app (each named ``edgechain-<node tag>-<app id
prefix>`` and labelled with the node's tag, so several nodes can share one engine),
their status, and the images (present or not, saved for a destination that lacks one,
loaded from a migration). Engine and transport errors become ``AppRuntimeError`` with
the engine named. The docker SDK is imported here, and only by a node configured with
an engine (``runtime/runtimes.py``).

CRIU (``docker checkpoint``) needs a kernel that passes ``criu check``: detected once
(:func:`is_criu_available`), never assumed.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgechain.runtime.app_log import MAX_TAIL_BYTES, LogTail, get_log_lines
from edgechain.runtime.base import AppNotFoundError, AppRuntimeError, AppStatus, get_app_dirname
from edgechain.runtime.podman import ENGINE_API_VERSION
from edgechain.runtime.restart_backoff import get_last_line
from edgechain.types import AppId

LABEL_APP = "edgechain.app"
LABEL_NAME = "edgechain.name"
LABEL_NODE = "edgechain.node"
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


def get_status(container: Any) -> AppStatus:
    """The engine's state of a container as an app status (exited, created: stopped)."""
    state = str(container.status)
    if state == "running":
        return AppStatus.RUNNING
    if state == "paused":
        return AppStatus.PAUSED
    return AppStatus.STOPPED


def get_own_exit_code(container: Any, pid_file: Path) -> int | None:
    """The engine's exit code of a container that ended on its own: stopped, and its
    ``pid_file`` still there (the runtime's own stop removes it); else None."""
    if get_status(container) is not AppStatus.STOPPED or not pid_file.exists():
        return None
    code = container.attrs.get("State", {}).get("ExitCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


LAST_OUTPUT_LINES = 5
"""Log lines asked of the engine for an ended container's last words."""


def get_last_output(container: Any) -> str:
    """The last line an ended container wrote (the engine's log of it,
    ``restart_backoff.get_last_line``); "" when the engine keeps none or fails."""
    try:
        output = container.logs(stdout=True, stderr=True, tail=LAST_OUTPUT_LINES)
    except Exception:  # the SDK's APIError, a log driver without reads, a lost socket
        return ""
    return get_last_line(output) if isinstance(output, bytes) else ""


def read_output(container: Any, lines: int) -> bytes:
    """The last ``lines`` lines the engine kept of ``container``'s output (its
    ``json-file`` log, capped by ``container_limits.get_log_config``), as bytes."""
    try:
        output = container.logs(stdout=True, stderr=True, tail=lines)
    except Exception as exc:  # the SDK's APIError, a log driver without reads
        raise AppRuntimeError(f"container engine: cannot read the log: {exc}") from exc
    return output if isinstance(output, bytes) else b""


def get_log_tail(container: Any, lines: int) -> LogTail:
    """The end of ``container``'s output (:func:`read_output`), at most ``lines``."""
    data = read_output(container, lines)
    cut = len(data) > MAX_TAIL_BYTES
    tail = get_log_lines(data[-MAX_TAIL_BYTES:], lines, cut=cut)
    # The engine gave at most ``lines``: all of them means there may be more before.
    return replace(tail, truncated=tail.truncated or len(tail.lines) >= lines)


def get_leader_pid(container: Any) -> int:
    """The host pid of the container's init (0 when it does not run)."""
    return int(container.attrs.get("State", {}).get("Pid") or 0)


def open_engine_client(base_url: str | None, *, ping: bool) -> Any:
    """A docker SDK client for ``base_url`` (``DOCKER_HOST`` when None); ``ping``: fail
    now, with the engine named, when it does not answer."""
    import docker

    try:
        client = (
            docker.DockerClient(base_url=base_url, version=ENGINE_API_VERSION)
            if base_url
            else docker.from_env()
        )
        if ping:
            client.ping()
    except Exception as exc:  # the SDK's errors and its transport's
        raise AppRuntimeError(
            f"container engine {base_url or '(DOCKER_HOST)'} does not answer: {exc}"
        ) from exc
    return client


class EngineContainers:
    """The containers one node tag owns on an engine, and the engine's images."""

    def __init__(self, client: Any, node_tag: str) -> None:
        self.client = client
        self.node_tag = node_tag

    def get_name(self, app: AppId) -> str:
        return f"edgechain-{self.node_tag}-{get_app_dirname(app)[:16]}"

    def get_labels(self, app: AppId, name: str) -> dict[str, str]:
        return {LABEL_APP: get_app_dirname(app), LABEL_NAME: name, LABEL_NODE: self.node_tag}

    def find(self, app: AppId) -> Any | None:
        """The app's container, None when there is none."""
        import docker.errors

        try:
            return self.client.containers.get(self.get_name(app))
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise AppRuntimeError(f"container engine: {exc}") from exc

    def get(self, app: AppId) -> Any:
        container = self.find(app)
        if container is None:
            raise AppNotFoundError(f"no container for app {bytes(app).hex()[:16]}")
        return container

    def run(self, image: str, **kwargs: Any) -> Any:
        """Create and start a container; returned with its attributes loaded."""
        import docker.errors

        try:
            container = self.client.containers.run(image, **kwargs)
            container.reload()
        except docker.errors.DockerException as exc:
            raise AppRuntimeError(str(exc)) from exc
        return container

    def list_mine(self) -> Iterator[tuple[AppId, str, Any]]:
        """(app, name, container) for every container of this node tag."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_NODE}={self.node_tag}"}
            )
        except Exception as exc:  # the engine's errors and its transport's
            raise AppRuntimeError(f"container engine: {exc}") from exc
        for container in found:
            labels = container.labels or {}
            try:
                app = AppId(bytes.fromhex(labels.get(LABEL_APP, "")))
            except ValueError:
                continue  # not one of ours
            yield app, labels.get(LABEL_NAME, ""), container

    def has_image(self, image: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise AppRuntimeError(f"container engine: {exc}") from exc
        return True

    def write_image(self, container: Any, out: Path) -> None:
        """``docker save`` of the image the container was created from, by the
        reference it was created with, so the destination loads it under that same name
        (``Image.save`` would use the image's first tag)."""
        reference = container.attrs["Config"]["Image"]
        with out.open("wb") as sink:
            for chunk in self.client.api.get_image(reference):
                sink.write(chunk)

    def load_image(self, tar: Path) -> None:
        with tar.open("rb") as source:
            self.client.images.load(source)

    def close(self) -> None:
        self.client.close()
