"""A private Podman API service: the Docker Engine API the container runtime talks to.

Reproducible from a clean Debian machine with ``podman``, ``runc`` and
``busybox-static`` installed (``scripts/system-deps.sh``): everything else is written
here. The service gets its own ``containers.conf`` (``CONTAINERS_CONF``), its own
storage (``--root``/``--runroot``, the ``vfs`` driver so no overlay mount outlives it)
and its own socket, so two services on one host act as two nodes with separate image
stores and nothing touches the host's default podman state.

The ``containers.conf`` settings are the ones this kind of VM needs: ``runc`` (crun is
not installed), ``cgroupfs`` (no systemd), explicit ``nofile``/``nproc`` ulimits capped
to the host's hard limits (without them container start fails on this kernel), and
file-based events (no journald).

Command line (``scripts/podman-service.sh`` wraps it)::

    python -m edgechain.runtime.podman serve --dir /tmp/edgechain-podman
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from edgechain.errors import LocalError

SERVICE_START_TIMEOUT_S = 30.0
STORAGE_DRIVER = "vfs"
"""Default: copies layers instead of mounting them, so a killed run leaks no mount."""
ENGINE_API_VERSION = "1.41"
"""Docker Engine API version of Podman 4's compat API (and accepted by later ones)."""


class PodmanUnavailableError(LocalError):
    """Podman is missing or cannot run containers on this host (the reason says why)."""


def get_containers_conf(tmp_dir: Path) -> str:
    """The ``containers.conf`` text for this host (ulimits capped to its hard limits)."""
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 65536 if nofile_hard == resource.RLIM_INFINITY else min(65536, nofile_hard)
    nproc = 4096 if nproc_hard == resource.RLIM_INFINITY else min(4096, nproc_hard)
    return (
        "# Written by edgechain.runtime.podman; see its module docstring for why.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'tmp_dir = "{tmp_dir}"\n'
    )


def get_mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first (overlay leaves some behind)."""
    root = str(Path(path).resolve())
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def get_unavailable_reason() -> str | None:
    """Why podman cannot be used here, or None when the binaries are present."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian package podman; scripts/system-deps.sh)"
    if shutil.which("runc") is None:
        return "runc is not installed (Debian package runc; scripts/system-deps.sh)"
    return None


class PodmanService:
    """``podman system service`` on a private socket, storage and configuration."""

    def __init__(
        self,
        workdir: Path,
        *,
        podman: str = "podman",
        storage_driver: str = STORAGE_DRIVER,
        runroot: Path | None = None,
    ) -> None:
        """``runroot``: where the service keeps its run state (``workdir/run`` by
        default); podman refuses one longer than 50 characters."""
        self.workdir = Path(workdir)
        self.podman = podman
        self.storage_driver = storage_driver
        self.socket_path = self.workdir / "podman.sock"
        self.storage = self.workdir / "storage"
        self.runroot = Path(runroot) if runroot is not None else self.workdir / "run"
        self.conf = self.workdir / "containers.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def get_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def get_cli_args(self) -> list[str]:
        """``podman`` with the global flags that select this service's storage."""
        return [
            self.podman,
            "--root",
            str(self.storage),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.storage_driver,
        ]

    def run_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a podman CLI command against this service's storage; raise on failure."""
        done = subprocess.run(
            [*self.get_cli_args(), *args],
            env=self.get_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise PodmanUnavailableError(
                f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
            )
        return done

    def start(self, timeout_s: float = SERVICE_START_TIMEOUT_S) -> None:
        reason = get_unavailable_reason()
        if reason:
            raise PodmanUnavailableError(reason)
        if len(str(self.socket_path)) > 100:
            raise PodmanUnavailableError(f"socket path too long for AF_UNIX: {self.socket_path}")
        for path in (self.workdir, self.storage, self.runroot, self.workdir / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(get_containers_conf(self.workdir / "tmp"))
        self.socket_path.unlink(missing_ok=True)
        log = (self.workdir / "service.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [*self.get_cli_args(), "system", "service", "--time=0", self.base_url],
                env=self.get_env(),
                # conmon, which the service starts for each container, writes an ``oom``
                # file into its working directory when the kernel OOM-kills the
                # container: this one, not wherever the node (or a test) was started.
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        last_error = "socket never appeared"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PodmanUnavailableError(f"podman service exited: {self.get_log_tail()}")
            if self.socket_path.exists():
                try:
                    client = self.get_client()
                    try:
                        client.ping()
                        return
                    finally:
                        client.close()
                except Exception as exc:
                    last_error = str(exc)
            time.sleep(0.05)
        self.stop()
        raise PodmanUnavailableError(f"podman service did not answer: {last_error}")

    def get_log_tail(self, size: int = 2000) -> str:
        try:
            return (self.workdir / "service.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def get_client(self, timeout: int = 120) -> Any:
        import docker

        # A pinned API version: auto-detection costs a slow /version call per client.
        return docker.DockerClient(
            base_url=self.base_url, version=ENGINE_API_VERSION, timeout=timeout
        )

    def import_sample_image(self) -> None:
        """Build the sample apps' image (``runtime/image.py``) into this service."""
        from edgechain.runtime.image import import_sample_image

        client = self.get_client()
        try:
            import_sample_image(client, self.workdir)
        finally:
            client.close()

    def check_can_run(self, image: str, timeout_s: float = 60.0) -> None:
        """Run a throwaway container: proves runc, cgroups and ulimits work here.

        Create, start and poll its state rather than ``containers.run``: that waits on
        the service's ``wait`` and ``logs`` endpoints, and a missed exit event there
        once hung a loaded CI run for the client's whole timeout.
        """
        client = self.get_client(timeout=int(timeout_s))
        container = None
        try:
            container = client.containers.create(image, ["/bin/true"], network_mode="none")
            container.start()
            deadline = time.monotonic() + timeout_s
            while True:
                container.reload()
                state = container.attrs.get("State", {})
                if state.get("Status") == "exited":
                    break
                if time.monotonic() > deadline:
                    raise PodmanUnavailableError(
                        f"a /bin/true container still {state.get('Status')!r} after "
                        f"{timeout_s:.0f}s; service log: {self.get_log_tail(500)}"
                    )
                time.sleep(0.05)
            if state.get("ExitCode") != 0:
                raise PodmanUnavailableError(
                    f"/bin/true in a container exited with {state.get('ExitCode')}: "
                    f"{state.get('Error') or self.get_log_tail(500)}"
                )
        except PodmanUnavailableError:
            raise
        except Exception as exc:
            raise PodmanUnavailableError(f"podman cannot run a container here: {exc}") from exc
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            client.close()

    def remove_all_containers(self) -> None:
        client = self.get_client()
        try:
            for container in client.containers.list(all=True):
                try:
                    container.remove(force=True)
                except Exception:
                    continue  # already gone
        finally:
            client.close()

    def stop(self) -> None:
        """Remove every container, stop the service and its process group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # The service may be unhealthy; the group kill below runs regardless.
            with contextlib.suppress(Exception):
                self.remove_all_containers()
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
        else:
            # The service died (killed with the testnet's processes, say): its
            # containers run on under their conmon, outside its group. The CLI reaches
            # them through the same storage without a service.
            with contextlib.suppress(Exception):
                self.run_cli("rm", "--all", "--force", "--time", "0", timeout=60.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.socket_path.unlink(missing_ok=True)

    def destroy(self) -> None:
        """``stop``, unmount what the storage driver left mounted, delete the storage."""
        self.stop()
        for top in (self.runroot, self.workdir):
            for mount_point in get_mounts_under(top):
                subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
            shutil.rmtree(top, ignore_errors=True)

    def __enter__(self) -> PodmanService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgechain.runtime.podman")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a private podman API service until SIGTERM")
    serve.add_argument("--dir", type=Path, default=Path("/tmp/edgechain-podman"))
    serve.add_argument("--image", action="store_true", help="also import the sample image")
    args = parser.parse_args(argv)
    service = PodmanService(args.dir)
    service.start()
    if args.image:
        service.import_sample_image()
    print(f"DOCKER_HOST={service.base_url}", flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        service.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
