"""The reports this node signed: how it tells that another process signs as it.

A data directory copied to a second device (one SD-card image flashed twice, a backup
restored while the original runs) gives two processes one key. Each runs the apps the
chain places on that node, so every one of them runs twice. Only the key's holder can
sign the node's reports (Ed25519, ``crypto/report_key.py``), and blocks carry only
reports whose signature holds, so a block that carries a report of ours this process
did not sign, for a slot after its first own report, proves another process holds our
key. The node then stops its apps and itself (``node/identity_clash.py``).

No false alarm from a restart: one process holds a data directory at a time
(``node/data_dir_lock.py``), and a report is signed for the next slot at the latest
(``reports.py``), for a later slot than the head its node stored, so every report of an
earlier incarnation is for a slot at or before the first report of this one. A slot
more is allowed (:data:`RESTART_MARGIN_SLOTS`) for a store that lost its last block to
a power cut. Forks do not matter: any valid block is the proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgechain.chain.model import ResourceReport
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.types import Slot

RESTART_MARGIN_SLOTS = 1
"""Reports of ours up to this many slots after our first are not judged."""
OWN_REPORT_SLOTS_KEPT = 512
"""Slots of own reports remembered; a block carrying an older report of ours is not
judged (far below finality at any report interval a chain uses)."""


@dataclass
class OwnReports:
    """The signing roots of the reports this process signed, by slot."""

    first_slot: Slot | None = None
    roots: dict[Slot, set[bytes]] = field(default_factory=dict)

    def add(self, report: ResourceReport) -> None:
        if self.first_slot is None:
            self.first_slot = report.slot
        self.roots.setdefault(report.slot, set()).add(compute_report_signing_root(report))
        floor = report.slot - OWN_REPORT_SLOTS_KEPT
        for slot in [s for s in self.roots if s < floor]:
            del self.roots[slot]

    def is_foreign(self, report: ResourceReport) -> bool:
        """Whether ``report`` (ours by its node id, its signature checked) was signed by
        another process: after our first own report (and the margin), and not ours."""
        if self.first_slot is None or report.slot <= self.first_slot + RESTART_MARGIN_SLOTS:
            return False
        if report.slot < min(self.roots):
            return False  # older than what we remember
        return compute_report_signing_root(report) not in self.roots.get(report.slot, ())
