"""The fleet as the chain sees it: app views, an app's history, names resolved to ids.

Pure functions of chain state for the API and the CLI (DESIGN.md, "Apps"): where each
app should run comes from the head registry; where it was last *seen* running comes from
the nodes' signed reports the state carries; an app's history (submission, updates,
stops, placements, migrations, recoveries, departures of its node) comes from the
blocks of the head chain (``compute_fleet_history`` computes every app's at once, which
the node stores for the finalized blocks it prunes from memory).
Nothing here reads a clock or a runtime: migration timings are measured by the nodes
involved and served by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import AnyBlock, Block, CommandKind, PlanAction, ResourceReport
from edgechain.chain.validator_set import get_removed_nodes
from edgechain.orchestrator.load import is_reported_after_move
from edgechain.orchestrator.registry import AppRecord, AppState, Registry, get_record
from edgechain.types import AppId, BlockHash

MIN_PREFIX_HEX = 4
"""An app may be named by a unique prefix of its id, at least this many hex digits."""


@dataclass(frozen=True)
class AppView:
    """One app of the registry, with where the latest reports saw it running."""

    app_id: AppId
    name: str
    state: str
    """``running`` (placed), ``queued`` (running but not placed yet) or ``stopped``."""
    version: int
    node: bytes | None
    runtime: str
    owner: bytes
    created_slot: int
    last_move_slot: int | None
    move_to: bytes | None
    replica_node: bytes | None
    """Where its state replicas go (None: no replicas, or none named yet)."""
    state_node: bytes | None
    """The replica node the chain confirmed to hold its state, where it is recovered
    (``registry.apply_reports_to_registry``, ``placement.get_state_holder``)."""
    reported_on: tuple[bytes, ...]
    """Nodes whose latest report lists the app and was made after its last move
    (sorted): where it was seen running. A report from before the move says where the
    app was, so the node it left drops out of this list when the move lands, not when
    that node next reports (``load.is_reported_after_move``)."""
    state_bytes: int | None = None
    """Its state's size as its node's latest report gives it (else the largest another
    report that lists it gives; None: no report lists it)."""


@dataclass(frozen=True)
class HistoryEvent:
    """One thing the chain did to an app, in chain order."""

    slot: int
    block: BlockHash
    kind: str
    """``submit``, ``update``, ``stop``, ``start``, ``move`` (requested), ``remove``,
    ``place``, ``migrate``, ``recover`` (its node was down), ``replica`` (a new replica
    node) or ``node_left`` (its node left the validator set; the app stays placed there
    until the node is down)."""
    node: bytes | None = None
    """Where the event puts the app (place, migrate, recover, move), its new replica node
    (replica) or the node that left (node_left)."""
    origin: bytes | None = None
    """The node a migration takes it from."""
    signer: bytes | None = None
    """The key that signed the command (command events only)."""
    version: int | None = None
    """The spec version after a submit or update."""


def get_app_state_name(record: AppRecord) -> str:
    if record.state is AppState.STOPPED:
        return "stopped"
    return "queued" if record.node is None else "running"


def compute_app_view(record: AppRecord, reports: Iterable[ResourceReport]) -> AppView:
    listing = [(r, u) for r in reports for u in r.apps if u.app == record.app]
    sizes = {r.node: u.state_bytes for r, u in listing}
    seen = tuple(sorted(r.node for r, _ in listing if is_reported_after_move(record, r.slot)))
    own = sizes.get(record.node) if record.node is not None else None
    return AppView(
        app_id=record.app,
        name=record.spec.name,
        state=get_app_state_name(record),
        version=record.version,
        node=record.node,
        runtime=record.spec.runtime.name.lower(),
        owner=record.owner,
        created_slot=record.created_slot,
        last_move_slot=record.last_move_slot,
        move_to=record.move_to,
        replica_node=record.replica_node,
        state_node=record.state_node,
        reported_on=seen,
        state_bytes=own if own is not None else max(sizes.values(), default=None),
    )


def compute_app_views(registry: Registry, reports: Sequence[ResourceReport]) -> tuple[AppView, ...]:
    """Every app of the registry, in app id order."""
    return tuple(compute_app_view(record, reports) for record in registry.records)


def resolve_app(registry: Registry, text: str) -> AppId:
    """The app named by ``text``: its full id, a unique id prefix (at least
    ``MIN_PREFIX_HEX`` hex digits) or a unique name. KeyError when nothing matches,
    ValueError (listing the candidates) when several do."""
    wanted = text.strip().lower()
    if len(wanted) == 64:
        try:
            app = AppId(bytes.fromhex(wanted))
        except ValueError:
            pass
        else:
            if get_record(registry, app) is not None:
                return app
    by_name = [r.app for r in registry.records if r.spec.name == text]
    if len(by_name) == 1:
        return by_name[0]
    is_hex = len(wanted) >= MIN_PREFIX_HEX and all(c in "0123456789abcdef" for c in wanted)
    by_prefix = [r.app for r in registry.records if is_hex and r.app.hex().startswith(wanted)]
    candidates = by_name or by_prefix
    if not candidates:
        raise KeyError(f"no app named {text!r}")
    if len(candidates) > 1:
        listed = ", ".join(a.hex()[:12] for a in candidates[:8])
        raise ValueError(f"{text!r} names {len(candidates)} apps: {listed}")
    return candidates[0]


ChainStep = tuple[BlockHash, AnyBlock, Registry]
"""A block of the head chain with its hash and the registry *before* it (its parent's)."""


def compute_app_history(app: AppId, chain: Iterable[ChainStep]) -> list[HistoryEvent]:
    """What the chain did to ``app``. ``chain``: the head chain's blocks in order, each
    with the registry before it."""
    return [event for owner, event in compute_fleet_history(chain) if owner == app]


def compute_fleet_history(chain: Iterable[ChainStep]) -> list[tuple[AppId, HistoryEvent]]:
    """What the chain did to every app, in chain order: each event with its app. The
    events of one app are those ``compute_app_history`` lists for it, in its order."""
    return [pair for step in chain for pair in compute_block_history(*step)]


def compute_block_history(
    block_hash: BlockHash, block: AnyBlock, before: Registry
) -> list[tuple[AppId, HistoryEvent]]:
    """What one block did to every app, in order: departures of app nodes, then plan
    entries, then commands. ``before``: the registry before the block (its parent's)."""
    events: list[tuple[AppId, HistoryEvent]] = []
    for node in get_removed_nodes(block):
        # Its apps stay there until the node is down, then a RECOVER moves them.
        for record in before.records:
            if record.node == node:
                events.append(
                    (record.app, HistoryEvent(block.slot, block_hash, "node_left", node=node))
                )
    if not isinstance(block, Block):
        return events
    for entry in block.plan:
        # place, migrate, recover (its node was down), replica (a new replica node)
        kind = entry.action.name.lower()
        origin = entry.origin if entry.action is not PlanAction.PLACE else None
        events.append(
            (
                entry.app,
                HistoryEvent(block.slot, block_hash, kind, node=entry.destination, origin=origin),
            )
        )
    versions: dict[AppId, int] = {}  # each app's spec version after the commands so far
    for cmd in block.commands:
        if cmd.kind is CommandKind.SUBMIT:
            app = compute_submitted_app_id(cmd.signer, cmd.seq)
            versions[app] = 1
        elif not cmd.app:
            continue  # authority and node commands name no app
        else:
            app = AppId(cmd.app)
            if app not in versions:
                placed = get_record(before, app)
                versions[app] = placed.version if placed is not None else 0
            if cmd.kind is CommandKind.UPDATE:
                versions[app] += 1
        events.append(
            (
                app,
                HistoryEvent(
                    block.slot,
                    block_hash,
                    cmd.kind.name.lower(),
                    node=cmd.node or None,
                    signer=bytes(cmd.signer),
                    version=versions[app] if cmd.spec is not None else None,
                ),
            )
        )
    return events
