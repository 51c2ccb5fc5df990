"""The node's CPU budget per slot (issue 13): the meter its spans charge, read at each
slot boundary into the per-slot log ``/status`` shows (``telemetry/cpu.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from edgechain.telemetry.cpu import Component, CpuMeter, SlotCpu, SlotCpuLog, install_meter


class CpuAccounting:
    """One per node process. :meth:`start` in the loop thread (its ``OTHER`` span,
    open for the loop's life); :meth:`on_pass` on every pass of the loop."""

    def __init__(self, on_slot: Callable[[SlotCpu], None] | None = None) -> None:
        self.meter = CpuMeter()
        self.log = SlotCpuLog()
        self.on_slot = on_slot
        """Told each slot's sample as it closes (the node's metrics)."""
        self._slot: int | None = None
        self._on_duty = False

    def start(self) -> None:
        self.meter.start(Component.OTHER)
        install_meter(self.meter)

    def stop(self) -> None:
        install_meter(None)

    def on_pass(self, slot: int | None, on_duty: bool) -> None:
        """``slot``: the current slot (None before genesis); ``on_duty``: producer or
        committee now. A slot counts as on duty if any pass in it was."""
        if slot == self._slot:
            self._on_duty = self._on_duty or on_duty
            return
        if slot is not None:
            ended = self._slot if self._slot is not None else -1
            sample = self.log.record(
                ended, self._on_duty, self.meter.get_totals_ns(), time.process_time_ns()
            )
            if sample is not None and self.on_slot is not None:
                self.on_slot(sample)
        self._slot = slot
        self._on_duty = on_duty
