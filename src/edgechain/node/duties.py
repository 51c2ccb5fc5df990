"""The node's duties as the OS sees them: the VDF the engine asks for and the
scheduling priority of the duty it has now.

:class:`NodeDuties` is a mixin of :class:`~edgechain.node.Node` (split out of
``node.py``, which owns the attributes it uses): the VDF thread's callbacks
(``vdf_worker.py`` runs the evaluations) and the loop's duty priority, chosen by the pure
:func:`~edgechain.node.duty.choose_duty_nice` and applied by
:class:`~edgechain.node.duty.DutyPriority`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import Output, VdfRequest
from edgechain.consensus.state import get_current_slot
from edgechain.crypto import vdf
from edgechain.node.clock import NodeClock
from edgechain.node.cpu import CpuAccounting
from edgechain.node.duty import DutyPriority, choose_duty_nice
from edgechain.node.priority import PRODUCER_NICE
from edgechain.node.vdf_worker import VdfRunner
from edgechain.types import PublicKey


class NodeDuties:
    """The VDF's callbacks and the duty priority (a mixin of ``Node``, which sets these)."""

    engine: ConsensusEngine | None
    pk: PublicKey
    clock: NodeClock
    duty: DutyPriority
    vdf_runner: VdfRunner
    cpu: CpuAccounting

    if TYPE_CHECKING:  # Node's own

        def _apply(self, out: Output) -> None: ...

        def _request_tick(self, at_ms: int) -> None: ...

    def _on_vdf_start(self) -> None:
        # Raised now, not at the loop's next pass: the request may come from a message
        # handler, with a backlog of other callbacks before the loop runs again.
        self.duty.set(PRODUCER_NICE)

    def _on_vdf_result(self, request: VdfRequest, result: vdf.VdfResult) -> None:
        engine = self.engine
        assert engine is not None  # the engine asked for this evaluation
        self._apply(engine.on_vdf_result(request, result, self.clock.now_ms()))
        self._request_tick(self.clock.now_ms())

    def _drop_unwanted_vdfs(self, now: int, *, all_of_them: bool = False) -> None:
        engine = self.engine
        if all_of_them or engine is None:
            self.vdf_runner.drop_all()
        else:
            self.vdf_runner.drop_unwanted(lambda request: engine.is_vdf_wanted(request, now))

    def _settle_priority(self, now: int) -> int | None:
        """Our duty's priority now (``choose_duty_nice``), applied; the nice value."""
        engine = self.engine
        assert engine is not None
        nice = choose_duty_nice(engine, self.pk, now, vdf_running=self.vdf_runner.is_running())
        self.duty.set(nice)
        return nice

    def _update_priority(self, now: int) -> None:
        engine = self.engine
        assert engine is not None
        nice = self._settle_priority(now)
        params = engine.params
        self.cpu.on_pass(
            get_current_slot(params, now) if params is not None else None, nice is not None
        )
