"""Fixtures of the runtime tests: process runtimes, and a real Podman API service.

The podman fixture is session-scoped: it starts two private ``podman system service``
instances (two nodes with separate image stores; see ``edgechain.runtime.podman``),
imports the python-free sample image into both, proves a container can run, and at the
end removes every container and stops both services. It skips, saying why, only when
podman is not installed or cannot run a container on this host; with
``EDGECHAIN_REQUIRE_PODMAN=1`` that is a failure instead.

``manager`` is a real ``AppManager`` over ``test_lifecycle.FakeChain`` (a small chain
whose registries the test writes), for the tests of reconcile; closed afterwards.

``tmp_path`` is overridden here: when the tests run as root, the process runtime runs
apps as an unprivileged user (``nobody``), which must be able to reach its state
directory, and pytest's own temporary directories are 0700. Each test gets a fresh
directory under a searchable (0711, not listable) base in ``/tmp`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edgechain.runtime.image import ImageBuildError
from edgechain.runtime.manager import AppManager
from edgechain.runtime.podman import (
    PodmanService,
    PodmanUnavailableError,
    get_unavailable_reason,
)
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.samples import SAMPLE_IMAGE

if TYPE_CHECKING:
    from .test_lifecycle import FakeChain


@contextlib.contextmanager
def _reachable_dir(parent: Path, prefix: str | None = None) -> Iterator[Path]:
    """A new directory in ``parent`` every user may pass through (0711) but not list;
    removed with its contents afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[AppManager, FakeChain]]:
    """A real ``AppManager`` over a fresh fake chain (see the module docstring)."""
    from .test_lifecycle import ME, FakeChain  # a test module: imported when used

    chain = FakeChain()
    apps = AppManager(tmp_path / "node", ME.node, ME.sk)
    apps.attach(chain)
    try:
        yield apps, chain
    finally:
        asyncio.run(apps.close())


@pytest.fixture(scope="session")
def reachable_base() -> Iterator[Path]:
    with _reachable_dir(Path("/tmp"), prefix="ecrt-") as base:
        yield base


@pytest.fixture
def tmp_path(reachable_base: Path) -> Iterator[Path]:
    """A fresh per-test directory the app user can reach (see the module docstring)."""
    with _reachable_dir(reachable_base) as path:
        yield path


@pytest.fixture
def process_pair(tmp_path: Path) -> Iterator[tuple[ProcessRuntime, ProcessRuntime]]:
    """Two process runtimes (two nodes' roots) closed after the test."""
    a = ProcessRuntime(tmp_path / "node-a", stop_grace_s=2.0)
    b = ProcessRuntime(tmp_path / "node-b", stop_grace_s=2.0)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("EDGECHAIN_REQUIRE_PODMAN") == "1":
        pytest.fail(f"podman required but unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_services() -> Iterator[tuple[PodmanService, PodmanService]]:
    """Two private podman API services (nodes A and B), each with the sample image."""
    reason = get_unavailable_reason()
    if reason:
        _skip_or_fail(reason)
    # Under /tmp, short: AF_UNIX socket paths are limited to ~100 bytes.
    base = Path(tempfile.mkdtemp(prefix="ecpod-", dir="/tmp"))
    services = (PodmanService(base / "a"), PodmanService(base / "b"))
    try:
        for service in services:
            service.start()
            service.import_sample_image()
        services[0].check_can_run(SAMPLE_IMAGE)
    except (PodmanUnavailableError, ImageBuildError) as exc:
        logs = "\n".join(f"{s.workdir.name}: {s.get_log_tail()}" for s in services)
        for service in services:
            service.destroy()
        shutil.rmtree(base, ignore_errors=True)
        _skip_or_fail(f"podman cannot run containers here: {exc}\nservice logs:\n{logs}")
    try:
        yield services
    finally:
        for service in services:
            service.destroy()
        shutil.rmtree(base, ignore_errors=True)
