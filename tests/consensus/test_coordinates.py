"""The chain's copy of each validator's network coordinate (consensus/state.py,
``compute_coordinates``): moved by a bounded step per report, dropped when the node
leaves, identical whatever the report order."""

from __future__ import annotations

import dataclasses

from edgechain.chain.model import NO_REPORT_SIGNATURE, ORIGIN, Coordinate, ResourceReport
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.cluster.vivaldi import MAX_STEP_US
from edgechain.consensus.state import compute_coordinates
from edgechain.types import NodeId, PublicKey, Slot


def _node(i: int) -> NodeId:
    return NodeId(bytes([i]) * 32)


def _validators(*indices: int) -> ValidatorSet:
    return ValidatorSet(
        tuple(ValidatorInfo(_node(i), PublicKey(bytes([i]) * 48), "", ()) for i in indices)
    )


def _report(i: int, x: int, y: int) -> ResourceReport:
    return ResourceReport(
        _node(i), Slot(1), 0, 0, 0, 0, 0, (), NO_REPORT_SIGNATURE, coordinate=Coordinate(x, y)
    )


def test_a_report_moves_its_node_by_at_most_a_step_from_the_origin() -> None:
    validators = _validators(1, 2, 3)
    after = compute_coordinates({}, (_report(1, 500_000, -3), _report(2, 40, 50)), validators)
    assert after == {_node(1): Coordinate(MAX_STEP_US, -3), _node(2): Coordinate(40, 50)}
    again = compute_coordinates(after, (_report(1, 500_000, -3),), validators)
    assert again[_node(1)] == Coordinate(2 * MAX_STEP_US, -3)
    assert list(again) == sorted(again)
    assert _node(3) not in again  # never reported: clustered at the origin


def test_unchanged_without_reports_and_pruned_when_a_node_leaves() -> None:
    known = {_node(1): Coordinate(1, 1), _node(2): Coordinate(2, 2)}
    assert compute_coordinates(known, (), _validators(1, 2)) is known
    assert compute_coordinates(known, (), _validators(2)) == {_node(2): Coordinate(2, 2)}
    assert compute_coordinates(known, (_report(9, 5, 5),), _validators(1, 2)) == known


def test_report_order_does_not_matter() -> None:
    validators = _validators(1, 2, 3)
    reports = (_report(3, -7, 7), _report(1, 1, 1), _report(2, 0, 0))
    a = compute_coordinates({}, reports, validators)
    b = compute_coordinates({}, tuple(reversed(reports)), validators)
    assert a == b and list(a) == list(b)
    assert dataclasses.replace(reports[2]).coordinate == ORIGIN
