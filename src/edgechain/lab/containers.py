"""Private container engines for a local testnet (``edgechain testnet --containers``).

Each node given an engine gets its own ``podman system service`` (``runtime/podman.py``:
its own socket, storage and configuration under ``<node data dir>/podman``), with the
sample apps' image (``runtime/image.py``) imported, as the runtime tests do. So the nodes
of one host hold separate image stores, as separate devices would, and a migration
between two of them carries the image when the destination lacks it.

The engines belong to the launcher, not to the nodes: a node killed by the testnet
(``--kill``) leaves its engine and its containers behind, which is what a crashed node
does on a device (its watchdog freezes them; ``runtime/watchdog.py``). Every engine is
stopped, its containers removed and its storage deleted when the testnet ends.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from edgechain.errors import LocalError
from edgechain.runtime.image import ImageBuildError
from edgechain.runtime.podman import PodmanService, PodmanUnavailableError
from edgechain.runtime.samples import SAMPLE_IMAGE

ENGINE_DIR = "podman"
MAX_SOCKET_PATH = 100
"""AF_UNIX socket paths are limited to 108 bytes; a little room is kept."""
RUNROOT_PREFIX = "ecrun-"
"""Podman refuses a run root longer than 50 characters: the engines keep theirs in one
short directory under /tmp (``/tmp/ecrun-XXXXXXXX/<node index>``), removed at the end."""


class ContainerEngineError(LocalError):
    """A testnet node's container engine cannot be started (the reason says why)."""


class ContainerEngines:
    """One private Podman API service per given node data directory."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.services: dict[int, PodmanService] = {}
        self._runroots: Path | None = None

    def start(self, nodes: Iterable[tuple[int, Path]]) -> dict[int, str]:
        """Start an engine for each (index, data dir), with the sample image; returns
        each index's Engine API URL. Raises :class:`ContainerEngineError` (after
        stopping what started) when podman cannot run a container here."""
        try:
            for index, data_dir in nodes:
                if self._runroots is None:
                    self._runroots = Path(tempfile.mkdtemp(prefix=RUNROOT_PREFIX, dir="/tmp"))
                service = PodmanService(data_dir / ENGINE_DIR, runroot=self._runroots / str(index))
                if len(str(service.socket_path)) > MAX_SOCKET_PATH:
                    raise ContainerEngineError(
                        f"{service.socket_path} is too long for a unix socket: use a "
                        "shorter --run-dir"
                    )
                self.services[index] = service
                service.start()
                service.import_sample_image()
                if len(self.services) == 1:
                    service.check_can_run(SAMPLE_IMAGE)  # once: the host is the same
        except (PodmanUnavailableError, ImageBuildError) as exc:
            self.stop()
            raise ContainerEngineError(f"--containers: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        self.log(f"container engines (podman) ready for {len(self.services)} nodes")
        return {index: service.base_url for index, service in self.services.items()}

    def stop(self) -> None:
        """Stop every engine, removing its containers and its storage."""
        services, self.services = list(self.services.values()), {}
        for service in services:
            with contextlib.suppress(Exception):
                service.destroy()
        if self._runroots is not None:
            shutil.rmtree(self._runroots, ignore_errors=True)
            self._runroots = None

    def __enter__(self) -> ContainerEngines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
