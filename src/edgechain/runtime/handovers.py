"""Which app copies this node handed over, and from which slot on (``runtime/manager.py``).

When a migration out completes, the origin ends its copy and keeps its state
(``RetiringRuntime``), and marks the handover on disk:
``<transfer_dir>/handed/<MIGRATE block hash>-<app dir>``, holding the MIGRATE's slot.

- ``MigrationsOut`` reads a mark so that a handover it completed is not offered again.
- ``AppStarter`` reads it when the chain RECOVERs the app back here (the destination
  went down before its report showed the app). The copy kept here is then the state as
  it was handed over, and a replica the destination took from that slot on is newer.
  Without the mark, a RECOVER started the app from the kept copy: in the suite's
  exactly-once run (session 62), a counter resumed from 37 while its replica node held
  the destination's 41, and handed it on 12 ms after the start.

A mark ends when the app runs here again (a start, a migration in) or its copy is
removed: then what this node holds is no longer the handed-over state.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from edgechain.runtime.base import get_app_dirname
from edgechain.types import AppId, BlockHash, Slot

HANDED_DIR = "handed"


class HandoverMarks:
    """The marks under ``transfer_dir``; every method blocks (file I/O)."""

    def __init__(self, transfer_dir: Path) -> None:
        self.root = Path(transfer_dir) / HANDED_DIR

    def get_path(self, block_hash: BlockHash, app: AppId) -> Path:
        return self.root / f"{bytes(block_hash).hex()}-{get_app_dirname(app)}"

    def is_marked(self, block_hash: BlockHash, app: AppId) -> bool:
        """Whether ``app`` was handed over for the MIGRATE of ``block_hash``."""
        return self.get_path(block_hash, app).exists()

    def mark(self, block_hash: BlockHash, app: AppId, slot: Slot) -> None:
        """``app`` was handed over for the MIGRATE of ``block_hash``, made in ``slot``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.get_path(block_hash, app).write_text(str(int(slot)), encoding="ascii")

    def get_slot(self, app: AppId) -> Slot | None:
        """The slot of the latest MIGRATE that ``app`` was handed over for, or None: no
        mark, or only marks without a slot (written by an older version, ignored)."""
        slots = []
        for path in self._find(app):
            with contextlib.suppress(OSError, ValueError):
                slots.append(int(path.read_text(encoding="ascii")))
        return Slot(max(slots)) if slots else None

    def forget(self, app: AppId) -> None:
        """The app runs here again, or its copy is gone: its marks no longer apply."""
        for path in self._find(app):
            path.unlink(missing_ok=True)

    def _find(self, app: AppId) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob(f"*-{get_app_dirname(app)}"))
