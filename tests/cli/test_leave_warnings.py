"""What ``edgechain node leave`` warns of before it asks (``cli/leave.py``): the chain's
validator floor, and the finality voters left (``consensus/finality_health.py``)."""

from __future__ import annotations

from typing import Any

from edgechain.cli.leave import compute_leave_warnings


def _status(voters: int, silent: int, *, is_voter: bool = True) -> dict[str, Any]:
    finality = {"voters": voters, "silent_voters": ["ab" * 32] * silent, "is_voter": is_voter}
    return {"is_validator": True, "finality": finality}


ROOMY = {"validators": 9, "committee_size": 3}


def test_no_warning_while_the_chain_can_spare_the_node() -> None:
    assert compute_leave_warnings(_status(9, 1), ROOMY) == []
    assert compute_leave_warnings({"is_validator": False}, {"validators": 4}) == []


def test_the_floor_warning() -> None:
    (warning,) = compute_leave_warnings(_status(9, 0), {"validators": 4, "committee_size": 3})
    assert "3 validators remain after this node" in warning


def test_a_leave_that_would_hold_finality_back_is_warned_of() -> None:
    """6 voters, 1 silent: this node makes 2, and 4 of 6 is not more than two thirds."""
    (warning,) = compute_leave_warnings(_status(6, 1), ROOMY)
    assert "2 of the chain's 6 finality voters are silent" in warning
    assert "edgechain admin exclude" in warning
    assert compute_leave_warnings(_status(7, 1), ROOMY) == []  # 5 of 7 is enough
    # A node that joined since the last finalization is no voter: nothing changes.
    assert compute_leave_warnings(_status(6, 1, is_voter=False), ROOMY) == []
