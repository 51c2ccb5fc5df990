"""What the app manager asks of the node's head chain (``runtime/manager.py``).

:class:`HeadQueries` holds the consensus engine the node attaches (a
``lifecycle.ChainView``; None until then) and answers from its head: the transfer
server's checks of an offer (:meth:`~HeadQueries.is_planned`,
:meth:`~HeadQueries.is_spec_current`, :meth:`~HeadQueries.verify_origin`), the head
state and an app's head record, a node's liveness as the next plan will see it, and
where a validator's transfer server listens. The manager's other parts read the
engine through it, so ``attach`` sets it in one place.

Transfer port: peers learn it from the chain, as the label ``edgechain.transfer=PORT``
of the node's inclusion request (:func:`get_transfer_label`, read back by
:func:`get_transfer_port`).
"""

from __future__ import annotations

import contextlib

from edgechain.chain.model import AppSpec, ChainParams, PlanEntry
from edgechain.chain.validator_set import ValidatorInfo
from edgechain.consensus.state import BlockState
from edgechain.crypto import bls
from edgechain.orchestrator.liveness import is_down
from edgechain.orchestrator.registry import AppRecord, Registry, get_apps_on_node, get_record
from edgechain.runtime.lifecycle import ChainArchive, ChainView, is_planned_on_head
from edgechain.types import AppId, BlockHash, NodeId

TRANSFER_LABEL = "edgechain.transfer"
ORIGIN_KEY_LOOKBACK = 64
"""Blocks back in which an origin's key is looked up (it may have left since)."""


def get_transfer_label(port: int) -> str:
    return f"{TRANSFER_LABEL}={port}"


def get_transfer_port(labels: tuple[str, ...]) -> int | None:
    """The transfer port a validator advertised in its labels, if any."""
    prefix = TRANSFER_LABEL + "="
    for label in labels:
        if label.startswith(prefix):
            with contextlib.suppress(ValueError):
                return int(label[len(prefix) :])
    return None


def get_transfer_address(info: ValidatorInfo) -> tuple[str, int] | None:
    """(host, port) of a validator's transfer server: its transport's host with the port
    of its transfer label; None when it advertises none."""
    port = get_transfer_port(info.labels)
    if port is None:
        return None
    # host:port of the node's transport; an IPv6 host keeps its colons.
    return info.address.rsplit(":", 1)[0].strip("[]"), port


class HeadQueries:
    """Read-only questions about the head chain of the attached engine."""

    def __init__(self, node_id: NodeId) -> None:
        self.node_id = node_id
        self.engine: ChainView | None = None
        self.archive: ChainArchive | None = None
        """The finalized chain memory no longer holds (``lifecycle.ChainArchive``)."""
        self._placing: tuple[Registry, bool] | None = None

    def is_planned(self, block_hash: BlockHash, entry: PlanEntry) -> bool:
        """The TransferServer's check: ``entry`` is in a block of our head chain."""
        engine = self.engine
        return engine is not None and is_planned_on_head(engine, block_hash, entry, self.archive)

    def is_spec_current(self, app: AppId, spec: AppSpec) -> bool:
        """The TransferServer's check: ``spec`` is the head registry's spec of ``app``
        (ids do not hash the spec, so the spec is checked against the chain)."""
        record = self.get_head_record(app)
        return record is not None and record.spec == spec

    def get_head_state(self) -> BlockState | None:
        engine = self.engine
        return engine.get_head_state() if engine is not None else None

    def get_head_record(self, app: AppId) -> AppRecord | None:
        state = self.get_head_state()
        return get_record(state.registry, app) if state is not None else None

    def is_placing_here(self) -> bool:
        """Whether the head's registry places an app on this node (the manager's idle
        check, asked on every loop pass: computed once per registry)."""
        state = self.get_head_state()
        if state is None:
            return False
        cached = self._placing
        if cached is None or cached[0] is not state.registry:
            placed = bool(get_apps_on_node(state.registry, self.node_id))
            cached = self._placing = (state.registry, placed)
        return cached[1]

    def verify_origin(self, origin: NodeId, message: bytes, signature: bytes) -> bool:
        """Did validator ``origin`` sign ``message``? Its key from the recent chain."""
        engine = self.engine
        if engine is None:
            return False
        for block_hash in reversed(engine.get_chain()[-ORIGIN_KEY_LOOKBACK:]):
            info = engine.states[block_hash].validators.get(origin)
            if info is not None:
                return bls.verify(info.public_key, message, signature)
        return False

    def is_node_down(self, node: bytes) -> bool:
        """The head's liveness view of ``node`` (``orchestrator/liveness.py``), as the
        next block's plan will see it."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        down_after = self.get_down_after_slots()
        if state is None or down_after is None:
            return False
        return is_down(state.last_seen, NodeId(node), state.slot + 1, down_after, state.stall)

    def _get_params(self) -> ChainParams | None:
        engine = self.engine
        return engine.params if engine is not None else None

    def get_slot_duration_s(self) -> float | None:
        """The chain's slot duration in seconds; None before the genesis."""
        params = self._get_params()
        return params.slot_duration_ms / 1000 if params is not None else None

    def get_down_after_slots(self) -> int | None:
        """The chain's K (``ChainParams.down_after_slots``); None before the genesis."""
        params = self._get_params()
        return params.down_after_slots if params is not None else None

    def get_destination(self, node: NodeId) -> tuple[str, int] | None:
        """Where ``node``'s transfer server listens, from its head-chain registration."""
        state = self.get_head_state()
        info = state.validators.get(node) if state is not None else None
        return get_transfer_address(info) if info is not None else None
