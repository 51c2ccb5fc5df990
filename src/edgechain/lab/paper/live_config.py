"""The live form of ``edgechain experiment paper`` (``live_run.py``): its
configuration, what a run has seen so far, and the apps' loads drawn from the seed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Log = Callable[[str], None]

MIN_SHARE, MAX_SHARE = 2, 8
"""Each app burns this many % of one core (drawn from the seed): the paper's apps
weigh 1.1-7.9 % of a node; below 2 % cpu-load's own forks weigh as much as its load."""
PERIOD_MS = 500
"""cpu-load's duty cycle (``lab/balance.py`` explains 500 ms)."""
CPU_CAPACITY = 1.0
"""Cores every node offers its apps (``edgechain testnet``'s default)."""


@dataclass(frozen=True)
class LiveConfig:
    out: Path
    nodes: int = 5
    committee: int = 3
    apps: int = 10
    slots: int = 30
    """Slots run after slot 0 (the apps on chain, or every node undrained)."""
    slot_duration_s: float = 2.0
    seed: int = 1
    """Draws the apps' loads and the worst case's."""
    runtime: str = "process"
    start_on_one_node: bool = False
    worst_nodes: int | None = None
    worst_apps: int | None = None
    worst_slots: int | None = None
    worst_sim_nodes: int = 100
    worst_sim_slots: int = 0
    migration_json: tuple[Path, ...] = ()
    setup_timeout_s: float = 300.0
    command: str = ""


@dataclass
class Progress:
    """What the run has seen so far: its phases' times, slot 0, the fleet snapshots."""

    started: float = field(default_factory=time.monotonic)
    timing: dict[str, float] = field(default_factory=dict)
    first_slot: int | None = None
    """Slot 0 of the run (:attr:`LiveConfig.slots`)."""
    undrain_sent_slot: int | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    samples_not_all_once: int = 0

    def mark(self, what: str) -> float:
        self.timing[what] = round(time.monotonic() - self.started, 1)
        return self.timing[what]


def get_app_shares(apps: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(MIN_SHARE, MAX_SHARE) for _ in range(apps)]
