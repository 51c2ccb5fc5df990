"""JSON views of chain state for the API: nodes, operators, and a generic converter.

Pure functions of a ``BlockState`` (no node, no I/O): byte strings become hex, enums
their value, dataclasses objects.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from edgechain.chain.authority import get_last_seq, is_admin, is_operator, is_revoked
from edgechain.chain.model import UNMEASURED_STATE_ROOM, Coordinate, ResourceReport
from edgechain.consensus.command_status import CommandStatus
from edgechain.consensus.state import BlockState
from edgechain.orchestrator.liveness import get_node_status


def to_json(value: object) -> Any:
    """A JSON-able copy of ``value``: bytes as hex, enums by value, dataclasses as objects."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


def render_nodes(state: BlockState, down_after: int) -> list[dict[str, Any]]:
    """The validators of ``state`` with their status as the next block's plan sees it
    (``orchestrator/liveness.py``: K = ``down_after``) and their latest report (if any)."""
    reports = {r.node: r for r in state.reports}
    out = []
    slot = state.slot + 1
    for info in state.validators.members:
        report = reports.get(info.node)
        status = get_node_status(
            state.last_seen, info.node, slot, down_after, state.authority.draining, state.stall
        )
        out.append(
            {
                "node_id": info.node.hex(),
                "status": status.value,
                "last_seen_slot": state.last_seen.get(info.node),
                "public_key": info.public_key.hex(),
                "address": info.address,
                "labels": list(info.labels),
                "cpu_bp": report.cpu_bp if report else None,
                "ram_bp": report.ram_bp if report else None,
                "pressure_bp": report.pressure_bp if report else None,
                "rtt_us": report.rtt_us if report else None,
                "state_room_bytes": _get_state_room(report),
                # The chain's copy (cluster/vivaldi.py): what the overlay clusters on.
                "coordinate_us": _render_coordinate(state.coordinates.get(info.node)),
                "report_slot": report.slot if report else None,
                "apps": [u.app.hex() for u in report.apps] if report else [],
            }
        )
    return out


def _get_state_room(report: ResourceReport | None) -> int | None:
    """The app state the node can take in, as its report gives it (None: no report, or
    a node that does not measure it: no limit)."""
    if report is None or report.state_room_bytes >= UNMEASURED_STATE_ROOM:
        return None
    return report.state_room_bytes


def _render_coordinate(c: Coordinate | None) -> list[int] | None:
    return [c.x_us, c.y_us] if c is not None else None


def render_operator(state: BlockState, public_key: bytes) -> dict[str, Any]:
    auth = state.authority
    return {
        "public_key": public_key.hex(),
        "admin": is_admin(auth, public_key),
        "operator": is_operator(auth, public_key),
        "revoked": is_revoked(auth, public_key),
        "last_seq": get_last_seq(auth, public_key),
    }


def render_command_status(digest: bytes, status: CommandStatus) -> dict[str, Any]:
    """``GET /commands/{hash}``: the status, and the command's kind, signer and seq."""
    out: dict[str, Any] = {"command_hash": digest.hex(), "status": status.state.value}
    if status.command is not None:
        out["kind"] = status.command.kind.name.lower()
        out["signer"] = bytes(status.command.signer).hex()
        out["seq"] = status.command.seq
    if status.slot is not None:
        out["slot"] = status.slot
    if status.block is not None:
        out["block"] = bytes(status.block).hex()
    if status.reason is not None:
        out["reason"] = status.reason
    if status.refused_heads:
        out["refused_heads"] = status.refused_heads
    return out
