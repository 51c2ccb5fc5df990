"""State replicas as a node takes part in them (DESIGN.md, "Exactly once", point 4).

The plan names each opted-in app's replica node (``PlanAction.REPLICA``, recorded as
``AppRecord.replica_node``). The app's node sends a snapshot of the app's state there
every ``spec.replica_interval_slots`` slots, signed and hashed like a migration
(``TransferClient.send_replica``); the replica node keeps the latest one
(``runtime/replica.py``, ``ReplicaStore``) and accepts a replica only from the node the
head registry places the app on (or the origin still handing it over: :func:`is_sender`),
and only if it is the app's replica node (:meth:`Replicator.is_wanted`, the transfer
server's callback). A RECOVER, or a
migration whose origin is down, then restarts the app from it
(``runtime/manager.py``).

A replica node also hands its replica on, under the origin's signature, to the
destination of a move that has not landed (:meth:`Replicator.get_handoffs`), so that
destination has the app's latest state if the origin dies before the handover. And a
node that is no longer the app's replica node (the chain named another, or dropped it
when the node was excluded) keeps its replica until it has handed it on to the new
replica node (:meth:`Replicator.is_passing_on`): the origin may be cut off from the new
one, or die before its first replica there, and the app would be recovered there from
nothing while its state sat here.

:class:`Replicator` is the bookkeeping: which replicas are due (:meth:`get_due`),
in flight, last sent, which to hand on (:meth:`get_handoffs`), and which stored ones
the chain no longer wants (:meth:`get_unwanted`). The manager runs the sends and
deletions in tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from edgechain.consensus.state import BlockState
from edgechain.orchestrator.load import is_move_landed
from edgechain.orchestrator.registry import AppRecord, AppState, get_record
from edgechain.types import AppId, NodeId, Slot


@dataclass(frozen=True)
class DueReplica:
    """A replica this node should send now."""

    app: AppId
    slot: Slot
    replica_node: NodeId


@dataclass(frozen=True)
class Handoff:
    """A stored replica this node should hand on: to where the app is moving (this is
    its replica node), or to its new replica node (this was its replica node)."""

    app: AppId
    to: NodeId
    """The destination of the app's unlanded move (its registry node), or its new
    replica node."""
    origins: frozenset[NodeId]
    """Only a replica one of these signed is handed on: the receiver accepts no other
    (``Replicator.is_wanted``, :func:`is_sender`)."""
    passing_on: bool = False
    """From a former replica node to the new one (``Replicator.is_passing_on``)."""


class Replicator:
    """Which replicas this node sends and keeps; pure bookkeeping over the head state."""

    def __init__(self, node_id: NodeId, get_head_state: Callable[[], BlockState | None]) -> None:
        self.node_id = node_id
        self._get_head_state = get_head_state
        self.last_sent: dict[tuple[AppId, NodeId], Slot] = {}
        """Per (app, replica node): the slot of the last replica it stored. A new replica
        node gets one at once."""
        self.in_flight: set[AppId] = set()
        self.last_handed: dict[tuple[AppId, NodeId], int] = {}
        """Per (app, destination): the slot of the last replica handed on there."""
        self.handing: set[AppId] = set()
        """Apps whose replica is being handed on (:meth:`get_handoffs`)."""
        self.passed_on: dict[tuple[AppId, NodeId], int] = {}
        """(app, new replica node) this former replica node has handed its replica on
        to, or found no receiver would take it (:meth:`is_passing_on`) -> the head slot
        up to which it keeps the replica all the same (:meth:`is_retaining`)."""

    def is_wanted(self, app: AppId, origin: NodeId) -> bool:
        """The transfer server's check of a replica signed by ``origin``: this node is
        the app's replica node, and the head places the app on ``origin`` or ``origin``
        is handing it over (:func:`is_sender`); or this node is where an unlanded move
        of the app goes and ``origin`` is where it comes from (a hand-off by the
        replica node: :meth:`get_handoffs`)."""
        state = self._get_head_state()
        record = get_record(state.registry, app) if state is not None else None
        # As the app's node, ``origin`` != us can only be the unlanded move's origin.
        return (
            state is not None
            and record is not None
            and origin != self.node_id
            and self.node_id in (record.replica_node, record.node)
            and is_sender(state, record, origin)
        )

    def get_handoffs(self, state: BlockState, stored: Collection[AppId]) -> list[Handoff]:
        """The replicas this node should hand on at the head ``state`` (``stored``: the
        apps it holds a replica of): :meth:`get_move_handoffs` and, for the apps whose
        replica node it no longer is, to their new one (:meth:`is_passing_on`). The
        caller checks the stored replica against :attr:`Handoff.origins` and
        :meth:`is_handoff_new`."""
        handoffs = self.get_move_handoffs(state)
        for app in sorted(stored):
            record = get_record(state.registry, app)
            if (
                record is None
                or record.replica_node is None
                or app in self.handing
                or not self.is_passing_on(record)
            ):
                continue
            origins = frozenset(
                node
                for node in (record.node, record.previous_node)
                if node is not None and node != self.node_id and is_sender(state, record, node)
            )
            handoffs.append(Handoff(app, record.replica_node, origins, passing_on=True))
        return handoffs

    def is_passing_on(self, record: AppRecord) -> bool:
        """This node holds a replica of ``record``'s app as its former replica node
        (neither its replica node nor its node now), and has not yet handed it on to
        the app's new replica node (none may be named yet): it keeps the replica
        meanwhile.

        Why. The chain names a new replica node when the old one is unavailable (quiet,
        down, excluded), and the old one dropped its replica at once. In a chaos run
        (session 50, ``--seed 5050 --fault-slots 14``) a partition cut an app's host off
        from the new replica node; the host went down, and the app started there "origin
        down" from 0 after 189 counts, while the old replica node, reachable, had just
        deleted the app's state. The hand-off carries the origin's signature, so the new
        replica node checks it as the origin's; one of an older slot than it holds is
        refused (``STALE_SLOT``), which counts as handed on."""
        spec = record.spec
        return (
            self.node_id not in (record.replica_node, record.node)
            and spec.stateful
            and spec.replica_interval_slots > 0
            and (record.app, record.replica_node) not in self.passed_on
        )

    def get_move_handoffs(self, state: BlockState) -> list[Handoff]:
        """The replicas this replica node should hand on at the head ``state``: for
        each app it keeps replicas of whose last move has not landed, the replica goes
        to the move's destination, provided it is the move's origin's.

        Why. Balancing moves an app with a replica node only to that node
        (``balancing.follows_replica``), but an operator's MOVE names any node. If the
        origin dies before the handover lands, that node starts the app once the
        origin is down ("origin down", ``lifecycle.get_start_reason``) from a local
        replica if it has one, else from nothing, while the app's latest replica sits
        here. Sent as soon as the move is on chain, K slots before the origin can be
        down, the replica is there when it is needed; the destination drops it once the
        app runs there (:meth:`get_unwanted`)."""
        handoffs = []
        for record in state.registry.records:
            to, origin = record.node, record.previous_node
            if (
                record.replica_node != self.node_id
                or to is None
                or origin is None
                or to in (self.node_id, origin)
                or record.state is not AppState.RUNNING
                or record.app in self.handing
                or is_move_landed(record, state.reports)
            ):
                continue
            handoffs.append(Handoff(record.app, to, frozenset((origin,))))
        return handoffs

    def is_handoff_new(self, handoff: Handoff, slot: int) -> bool:
        """Whether the replica of ``slot`` has not yet reached ``handoff.to``."""
        return self.last_handed.get((handoff.app, handoff.to), -1) < slot

    def on_handed(self, handoff: Handoff, slot: int, ok: bool, retain_slots: int = 0) -> None:
        """A hand-off ended (``ok``: the receiver holds the replica of ``slot``, or a
        newer one). A passing on that ended so is kept ``retain_slots`` more slots of
        the head (:meth:`is_retaining`; 0 where no receiver would take it)."""
        self.handing.discard(handoff.app)
        if ok:
            self.last_handed[(handoff.app, handoff.to)] = slot
            if handoff.passing_on:
                state = self._get_head_state()
                head_slot = state.slot if state is not None else 0
                self.passed_on[(handoff.app, handoff.to)] = head_slot + retain_slots

    def get_due(self, state: BlockState, running: Collection[AppId]) -> list[DueReplica]:
        """The replicas to send at the head ``state``: apps this node sends replicas of
        (:func:`is_sender`), RUNNING and running here, with a replica node, whose
        interval has passed since the last one."""
        due = []
        for record in state.registry.records:
            interval = record.spec.replica_interval_slots
            target = record.replica_node
            # is_sender last: it may scan the state's reports (is_move_landed), and this
            # runs every round over every record, most of them not running here.
            if (
                target is None
                or interval <= 0
                or record.state is not AppState.RUNNING
                or record.app not in running
                or record.app in self.in_flight
                or not is_sender(state, record, self.node_id)
            ):
                continue
            last = self.last_sent.get((record.app, target))
            if last is None or state.slot >= last + interval:
                due.append(DueReplica(record.app, state.slot, target))
        return due

    def on_sent(self, replica: DueReplica, ok: bool) -> None:
        self.in_flight.discard(replica.app)
        if ok:
            self.last_sent[(replica.app, replica.replica_node)] = replica.slot

    def on_head(self, state: BlockState) -> None:
        """Forget the passings-on of the apps whose replica node this node is again at
        the head ``state``: should it lose the role again, it passes its newer replica
        on anew."""
        self.passed_on = {
            (app, node): until
            for (app, node), until in self.passed_on.items()
            if (record := get_record(state.registry, app)) is not None
            and record.replica_node != self.node_id
        }

    def is_retaining(self, record: AppRecord, slot: int) -> bool:
        """This former replica node keeps a replica it has passed on (:meth:`on_handed`'s
        ``retain_slots``, the chain's K and two replica intervals: ``ReplicaSync``), in
        case the app's state goes on to be used up before it is copied anew.

        Why. In a chaos run (session 50, ``--seed 5353 --fault-slots 14``) a former
        replica node passed its replica on to the new one, and dropped it; the new one
        recovered the app from it when the host went down, so the app's state was on
        that node alone until its first replica reached the next replica node, and it
        was paused one slot later: the app started there from nothing. Kept, the
        replica is passed on to the next replica node as well (:meth:`is_passing_on`:
        a new replica node is a new passing on), under the first host's signature,
        which that node accepts while the recovery has not landed."""
        return self.node_id not in (record.replica_node, record.node) and any(
            app == record.app and slot < until for (app, _), until in self.passed_on.items()
        )

    def get_unwanted(
        self, state: BlockState, stored: Collection[AppId], running: Collection[AppId]
    ) -> list[AppId]:
        """Stored replicas the head no longer wants here: the app is gone, or this node is
        not its replica node and either not its node either, or its node running the app
        (``running``: a RECOVER or an "origin down" start here has used the replica).
        A former replica node keeps its replica until it has handed it on
        (:meth:`is_passing_on`), and a while after (:meth:`is_retaining`). A node the
        head names the app's ``state_node`` keeps it until the app runs here: the chain
        recovers a down node's app onto its confirmed state node
        (``placement.get_state_holder``) however long ago that node passed the replica
        on. A live run (session 60, ``test_replica_node_changes_live``) lost the state
        so: the former replica node, still the state node, dropped its passed-on replica
        after the retention, and the RECOVER onto it three slots later started the
        counter from 0 after 29 counts.

        Running, not merely held: a node the app left by an earlier handover keeps that
        copy's (older) state, and a RECOVER back to it must start from the replica. A
        live run once dropped the replica in the reconcile pass that the RECOVER's start
        raced with, and the app came back from that older state (32, its replica at 36).
        """
        unwanted = []
        for app in stored:
            record = get_record(state.registry, app)
            if record is None or (
                record.replica_node != self.node_id
                and (record.node != self.node_id or app in running)
                and (record.state_node != self.node_id or app in running)
                and not self.is_passing_on(record)
                and not self.is_retaining(record, state.slot)
            ):
                unwanted.append(app)
        return unwanted


def is_sender(state: BlockState, record: AppRecord, node: NodeId) -> bool:
    """Whether ``node`` sends the app's replicas: the head places the app there, or it
    is the origin of the app's last move and that move has not landed
    (``load.is_move_landed``). The origin of a handover that cannot land (its
    destination unreachable, then dead) runs the app on until the chain recovers it,
    up to K slots later, and recovers it onto the replica node when there is one
    (``placement.py``): without the origin's replicas meanwhile, the app came back
    from the replica of the slot before the move (live: 247 against 358 counts)."""
    if record.node == node:
        return True
    return record.previous_node == node and not is_move_landed(record, state.reports)
