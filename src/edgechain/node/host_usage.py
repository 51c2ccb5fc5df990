"""What the node measures of its host for its resource reports (the app manager adds
its apps' own usage: ``runtime/usage.py``)."""

from __future__ import annotations

from pathlib import Path

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.consensus.engine import LocalUsage
from edgechain.runtime.disk_guard import read_disk_space
from edgechain.runtime.pressure import read_cpu_pressure_bp


def _clamp_share(value: int) -> int:
    return max(0, min(BASIS_POINTS, value))


def measure_host_usage(cpu_capacity: float | None, data_dir: Path) -> LocalUsage:
    """The host's figures since the last call.

    With a declared capacity (the cores this node offers its apps) CPU is 0 here:
    the report's total is the sum of its apps' shares of the capacity, which the
    manager adds (``runtime/usage.py``); this process's own work, the same protocol
    on every node and noisy (VDF, transfers), is not part of it (``/status`` still
    shows its ``cpu_seconds``). Pressure is 0 too: host-wide PSI is about every
    tenant of a shared host, not about this node's share of it, and a node short of
    its share shows it as ``cpu_bp`` at capacity instead.
    """
    if cpu_capacity is None:
        cpu = _clamp_share(int(psutil.cpu_percent(None) * 100))
        pressure = read_cpu_pressure_bp()
    else:
        cpu = pressure = 0
    ram = int(psutil.virtual_memory().percent * 100)
    space = read_disk_space(data_dir)
    used = space.total_bytes - space.free_bytes
    disk = used * BASIS_POINTS // space.total_bytes if space.total_bytes else 0
    return LocalUsage(
        cpu_bp=cpu,
        ram_bp=_clamp_share(ram),
        disk_bp=_clamp_share(disk),
        pressure_bp=pressure,
        state_room_bytes=space.get_state_room(),
    )
