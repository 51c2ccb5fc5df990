"""What the dashboard shows, in one JSON object: :func:`compute_snapshot`.

A pure function of the node's public interface (``api/node_interface.py``): no I/O of its
own, JSON-able output. The server sends it to every open dashboard each time it changes
(``GET /events``) and answers ``GET /dashboard/snapshot`` with it, so it is compact and
cheap (a few milliseconds at 100 nodes and a 1000-block chain): nothing in it changes
between slots unless the chain, the node's peers or its memory (whole MiB) do.

Ids (node, app, block hash) are their first ``SHORT_HEX`` hex digits. Keys:

``node``: this node and its chain:
    ``id``, ``chain_id``, ``slot`` (the current slot by this node's clock), ``head`` and
    ``head_slot`` (its fork-choice head), ``role`` (``producer``, ``committee``,
    ``validator`` or ``none`` in the current slot), ``peers`` (DHT contacts),
    ``validators`` (on the head), ``rss_mb``, ``slot_duration_ms``,
    ``committee_size`` (the chain's parameter).
``blocks``: the last ``max_blocks`` blocks of the head chain, oldest first:
    ``slot``, ``hash``, ``skip``, ``signers`` (committee votes in its attestation),
    ``committee`` (the committee elected for it: the parameter, or everyone but the
    producer on a small set), ``by`` (the producer, or the node a skip block excludes),
    ``accepted_ms`` (when this node accepted it, by its clock; null if it does not
    remember).
``nodes``: the head's validators in public-key order: ``id``, ``status`` (``active``,
    ``down``, ``draining``: ``orchestrator/liveness.py``, as ``GET /nodes``), ``role``
    in the current slot, from its latest report (null without one) ``cpu_bp``,
    ``ram_bp``, ``pressure_bp``, ``report_slot``, and ``apps``: that report's apps,
    ``{id, cpu_bp, ram_bp, net_bytes_per_s}`` each (shares of the node, basis
    points; network bytes per second, ``runtime/net_traffic.py``).
``apps``: the head registry in app id order: ``id``, ``name``, ``state`` (``running``,
    ``queued``, ``stopped``), ``node`` (where the chain places it), ``runtime``,
    ``move_to`` (a MOVE waiting for the planner), ``last_move_slot``.
``migrations``: the plan entries that start or move an app (``place``, ``migrate``,
    ``recover``; not ``replica``) of the head chain's last ``history_blocks`` blocks,
    newest last, at most ``max_migrations``: ``slot``, ``action``, ``app``, ``name``
    (null once the app is gone), ``from`` (null for a placement), ``to``; and when this
    node was the origin of a migration and measured it (``runtime/migrations_out.py``,
    its latest attempt): ``outcome``, ``attempts``, ``save_ms``, ``transmit_ms``,
    ``resume_ms``, ``bytes`` (compressed, as sent), ``live``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from edgechain.api.node_interface import NodeInterface
from edgechain.chain.attestation import count_signers
from edgechain.chain.model import Block, PlanAction
from edgechain.chain.validator_set import NO_EXCLUSION
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import BlockState
from edgechain.node import ChainEntry
from edgechain.orchestrator.fleet import get_app_state_name
from edgechain.orchestrator.liveness import NodeStatus, is_down

SHORT_HEX = 16
"""Hex digits of an id in the snapshot (64 bits: no collision in any fleet)."""

SHOWN_ACTIONS = frozenset({PlanAction.PLACE, PlanAction.MIGRATE, PlanAction.RECOVER})
"""Plan entries the migrations list shows (a REPLICA entry starts and moves nothing)."""

RESULT_KEYS = ("outcome", "save_ms", "transmit_ms", "resume_ms", "live")
"""What a measured migration adds to its plan entry, as the node records it."""


def short(value: bytes) -> str:
    return value[: SHORT_HEX // 2].hex()


def _short_or_none(value: bytes | None) -> str | None:
    return short(value) if value else None


def compute_snapshot(
    node: NodeInterface,
    *,
    max_blocks: int = 60,
    max_migrations: int = 50,
    history_blocks: int = 1000,
) -> dict[str, Any]:
    """The dashboard's view of ``node`` (keys: the module's docstring). Migrations come
    from the last ``history_blocks`` blocks of the head chain (at least ``max_blocks``)."""
    overview = node.get_overview()
    params = node.get_params()
    state = node.get_head_state()
    slot, roles = node.get_slot_roles()
    role = roles.get_role(bytes.fromhex(overview["public_key"])).value if roles else "none"
    out: dict[str, Any] = {
        "node": {
            "id": str(overview["node_id"])[:SHORT_HEX],
            "chain_id": params.chain_id if params else None,
            "slot": slot,
            "head": short(state.block_hash) if state else None,
            "head_slot": state.slot if state else None,
            "role": role,
            "peers": overview["peers"],
            "validators": len(state.validators) if state else 0,
            "rss_mb": overview["rss_mb"],
            "slot_duration_ms": params.slot_duration_ms if params else None,
            "committee_size": params.committee_size if params else None,
        },
        "blocks": [],
        "nodes": [],
        "apps": [],
        "migrations": [],
    }
    if state is None or params is None:
        return out
    chain = node.get_recent_chain(max(history_blocks, max_blocks))
    recent = chain[-max_blocks:]
    accepted: dict[str, int] = {}
    if recent:
        for seen in node.get_blocks(recent[0].block.slot, 20 * max_blocks):
            accepted[seen["hash"]] = seen["accepted_ms"]
    for entry in recent:
        block, parent = entry.block, entry.parent_state
        if isinstance(block, Block):
            by: bytes | None = block.producer
        else:
            by = None if block.excluded == NO_EXCLUSION else block.excluded
        out["blocks"].append(
            {
                "slot": block.slot,
                "hash": short(entry.block_hash),
                "skip": not isinstance(block, Block),
                "signers": count_signers(block.signers),
                "committee": min(params.committee_size, max(len(parent.validators) - 1, 0)),
                "by": _short_or_none(by),
                "accepted_ms": accepted.get(entry.block_hash.hex()),
            }
        )
    out["nodes"] = _render_nodes(state, roles, params.down_after_slots)
    names: dict[bytes, str] = {}
    for record in state.registry.records:
        names[record.app] = record.spec.name
        out["apps"].append(
            {
                "id": short(record.app),
                "name": record.spec.name,
                "state": get_app_state_name(record),
                "node": _short_or_none(record.node),
                "runtime": record.spec.runtime.name.lower(),
                "move_to": _short_or_none(record.move_to),
                "last_move_slot": record.last_move_slot,
            }
        )
    out["migrations"] = _render_migrations(node, chain, names, max_migrations)
    return out


def _render_nodes(state: BlockState, roles: Roles | None, down_after: int) -> list[dict[str, Any]]:
    reports = {r.node: r for r in state.reports}
    draining = frozenset(state.authority.draining)
    view_slot = state.slot + 1  # as GET /nodes: the next block's plan's view
    out = []
    for info in state.validators.members:
        report = reports.get(info.node)
        if is_down(state.last_seen, info.node, view_slot, down_after, state.stall):
            status = NodeStatus.DOWN
        elif info.node in draining:
            status = NodeStatus.DRAINING
        else:
            status = NodeStatus.ACTIVE
        out.append(
            {
                "id": short(info.node),
                "status": status.value,
                "role": roles.get_role(info.public_key).value if roles else "none",
                "cpu_bp": report.cpu_bp if report else None,
                "ram_bp": report.ram_bp if report else None,
                "pressure_bp": report.pressure_bp if report else None,
                "report_slot": report.slot if report else None,
                "apps": [
                    {
                        "id": short(u.app),
                        "cpu_bp": u.cpu_bp,
                        "ram_bp": u.ram_bp,
                        "net_bytes_per_s": u.net_bps,
                    }
                    for u in report.apps
                ]
                if report
                else [],
            }
        )
    return out


def _render_migrations(
    node: NodeInterface, chain: list[ChainEntry], names: dict[bytes, str], limit: int
) -> list[dict[str, Any]]:
    shown: deque[dict[str, Any]] = deque(maxlen=limit)
    for entry in chain:
        block = entry.block
        if not isinstance(block, Block):
            continue
        for plan in block.plan:
            if plan.action not in SHOWN_ACTIONS:
                continue
            shown.append(
                {
                    "slot": block.slot,
                    "action": plan.action.name.lower(),
                    "app": short(plan.app),
                    "name": names.get(plan.app),
                    "from": _short_or_none(plan.origin),
                    "to": short(plan.destination),
                }
            )
    if not shown:
        return []
    # This node's measurements (it was the origin): the latest attempt of each.
    measured: dict[tuple[str, int, str], dict[str, Any]] = {}
    for result in node.get_migrations():
        key = (str(result.get("app")), int(result.get("slot", -1)), str(result.get("to")))
        measured[key] = result
    out = []
    for item in shown:
        found = measured.get((item["app"], item["slot"], item["to"]))
        if found is not None and item["action"] == "migrate":
            item.update((k, found.get(k)) for k in RESULT_KEYS)
            item["attempts"] = int(found.get("attempt", 0)) + 1
            item["bytes"] = found.get("compressed_bytes")
            if item["name"] is None:
                item["name"] = found.get("name")
        out.append(item)
    return out
