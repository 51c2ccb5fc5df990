"""CPU pressure from Linux PSI (pressure stall information), for the node's reports.

``/proc/pressure/cpu`` (Linux 4.20+, ``CONFIG_PSI``) reads like::

    some avg10=1.23 avg60=0.87 avg300=0.40 total=123456789
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0

"some avg10" is the share of the last 10 s in which at least one runnable task waited
for a CPU, in percent. It becomes ``LocalUsage.pressure_bp`` (``ResourceReport
.pressure_bp``): a node whose CPU is contended shows it here even when its ``cpu_bp``
does not reach capacity (the planner's saturation rule reads both).

Anything unexpected reads as 0, never as an error: a kernel without PSI (no file, or a
file that refuses reads when PSI is disabled at boot) or a format we do not know must
not stop a node, and 0 is what "no evidence of contention" means to the planner.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgechain.chain.model import BASIS_POINTS

CPU_PRESSURE_PATH = Path("/proc/pressure/cpu")


def parse_pressure_bp(text: str) -> int:
    """The "some avg10" percentage of a PSI file's contents, in basis points clamped to
    0..BASIS_POINTS; 0 when the line or the field is missing or malformed."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != "some":
            continue
        for field in fields[1:]:
            name, _, value = field.partition("=")
            if name != "avg10":
                continue
            try:
                percent = float(value)
            except ValueError:
                return 0
            if not math.isfinite(percent):
                return 0
            return max(0, min(BASIS_POINTS, round(percent * 100)))
        return 0
    return 0


def read_cpu_pressure_bp(path: Path = CPU_PRESSURE_PATH) -> int:
    """This host's CPU pressure now (:func:`parse_pressure_bp`); 0 without PSI."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        # Missing on old kernels; EOPNOTSUPP on kernels booted with psi=0.
        return 0
    return parse_pressure_bp(text)
