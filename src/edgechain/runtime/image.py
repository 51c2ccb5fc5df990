"""Build the sample apps' container image locally, with no registry and no python.

The image is ``FROM scratch`` in spirit: a root file system tar holding a static
busybox (Debian's ``busybox-static``), the applet links the sample scripts use, and
``apps/`` under ``/apps``. It is imported through the Engine API (``POST
/images/create?fromSrc=-``, what ``docker import`` / ``podman import`` do), so a node
needs nothing but the API socket.
"""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
import time
from pathlib import Path
from typing import Any

from edgechain.errors import LocalError
from edgechain.runtime.samples import IMAGE_APPS_DIR, SAMPLE_IMAGE, get_apps_dir

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = (
    "sh", "sleep", "head", "mv", "cat", "kill", "rm", "printf", "echo",
    "ls", "mkdir", "touch", "true", "false", "date", "wc", "tar",
)  # fmt: skip
EMPTY_DIRS = ("dev", "proc", "sys", "tmp", "state", "etc", "run")


class ImageBuildError(LocalError):
    """The sample image cannot be built or imported on this host."""


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable with no program interpreter (no dynamic loader).

    Debian's plain ``busybox`` package is dynamically linked and would not run in an
    image that has no libc; ``busybox-static`` is what the image needs.
    """
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        order = "<" if head[5] == 1 else ">"
        phoff = struct.unpack_from(order + "Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(order + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def get_busybox() -> Path:
    """A static busybox binary on this host (Debian ``busybox-static``)."""
    candidates = [Path(c) for c in BUSYBOX_CANDIDATES]
    found = shutil.which("busybox")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and is_static_elf(candidate):
            return candidate
    raise ImageBuildError("no static busybox on this host: install busybox-static")


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o1777 if name == "tmp" else 0o755
    info.mtime = mtime
    tar.addfile(info)


def write_sample_rootfs(out: Path, *, apps_dir: Path | None = None) -> Path:
    """Write the image's root file system as a tar file at ``out``."""
    busybox = get_busybox()
    apps = apps_dir or get_apps_dir()
    if not apps.is_dir():
        raise ImageBuildError(f"apps directory {apps} is missing")
    mtime = int(time.time())
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("bin", *EMPTY_DIRS):
            _add_dir(tar, name, mtime)
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mtime = mtime
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mtime = mtime
        tar.addfile(info, io.BytesIO(passwd))
        tar.add(apps, arcname=IMAGE_APPS_DIR.lstrip("/"), recursive=True)
    return out


def import_sample_image(client: Any, workdir: Path, reference: str = SAMPLE_IMAGE) -> str:
    """Build the rootfs and import it as ``reference`` through a ``docker.DockerClient``."""
    repository, _, tag = reference.rpartition(":")
    if not repository:
        repository, tag = reference, "latest"
    rootfs = write_sample_rootfs(workdir / "edgechain-apps-rootfs.tar")
    try:
        client.api.import_image(src=str(rootfs), repository=repository, tag=tag)
    except Exception as exc:
        raise ImageBuildError(f"cannot import {reference}: {exc}") from exc
    finally:
        rootfs.unlink(missing_ok=True)
    try:
        client.images.get(reference)
    except Exception as exc:
        raise ImageBuildError(f"{reference} missing after import: {exc}") from exc
    return reference
