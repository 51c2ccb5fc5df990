"""RejectReason: the one list of rejection codes, and no raise site or counter past it.

A reason is a metrics label (``peer_errors``, ``decode_errors`` in a node's status), so
a string typed at a raise site would silently make a new label. The source checks parse
``src/`` with :mod:`ast`: a call to any ``PeerError`` class (found by walking the class
definitions, so a new subclass is covered) must not name its reason with a string, and
no reason counter may be indexed by one.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

from edgechain.errors import DecodeError, PeerError, RejectReason

SRC = Path(__file__).resolve().parents[1] / "src" / "edgechain"

REASON_COUNTERS = {"peer_errors", "decode_errors", "_refusals"}
"""Attributes holding a ``Counter[RejectReason]``."""

REASON_EVENTS = {"PeerRejected", "DhtRejected"}
"""Events whose first field is a reason."""


def test_values_are_unique_snake_case_and_spell_the_name() -> None:
    values = [member.value for member in RejectReason.__members__.values()]  # with aliases
    assert len(values) == len(set(values))
    for member in RejectReason:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", member.value), member
        assert member.name == member.value.upper(), member


def test_members_are_their_strings_in_counters_messages_and_json() -> None:
    counts: Counter[RejectReason] = Counter()
    counts[RejectReason.DOUBLE_VOTE] += 2
    assert counts["double_vote"] == 2  # type: ignore[index]  # old readers of the status
    assert json.dumps(dict(counts)) == '{"double_vote": 2}'
    assert json.dumps({"reason": RejectReason.BAD_TAG}) == '{"reason": "bad_tag"}'
    assert str(DecodeError(RejectReason.TRUNCATED, "need 4 bytes")) == "truncated: need 4 bytes"
    assert str(PeerError(RejectReason.DOUBLE_VOTE)) == "double_vote"
    assert f"{RejectReason.BAD_VDF}" == "bad_vdf"


# --- the source checks -----------------------------------------------------------------


def _parse_sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(SRC.rglob("*.py"))
        if not path.name.endswith("_pb2.py")
    }


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _find_peer_error_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """``PeerError`` and every class defined in ``src`` that derives from one of them."""
    family = {"PeerError"}
    grown = True
    while grown:
        grown = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or node.name in family:
                    continue
                if any(_name_of(base) in family for base in node.bases):
                    family.add(node.name)
                    grown = True
    return family


def _is_string(node: ast.expr | None) -> bool:
    """A str literal, an f-string, or an expression built from them (``"a" + b``)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_string(node.left) or _is_string(node.right)
    return False


def _get_reason_argument(call: ast.Call) -> ast.expr | None:
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    return next((kw.value for kw in call.keywords if kw.arg == "reason"), None)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"


def test_no_reason_is_a_string_literal_in_src() -> None:
    trees = _parse_sources()
    family = _find_peer_error_classes(trees)
    assert {"DecodeError", "ValidationError", "BlsError", "TransferError"} <= family
    raisers = family | REASON_EVENTS
    calls = subscripts = 0
    offenders: list[str] = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name_of(node.func) in raisers:
                calls += 1
                if _is_string(_get_reason_argument(node)):
                    offenders.append(f"{_where(path, node)}: {ast.unparse(node)}")
            elif isinstance(node, ast.Subscript) and _name_of(node.value) in REASON_COUNTERS:
                subscripts += 1
                if _is_string(node.slice):
                    offenders.append(f"{_where(path, node)}: {ast.unparse(node)}")
    # The walk found the raise sites and counters (a broken walk would pass vacuously).
    assert calls > 150 and subscripts >= 5, (calls, subscripts)
    assert offenders == [], "use a RejectReason member:\n" + "\n".join(offenders)


def test_the_source_check_catches_a_typo() -> None:
    tree = ast.parse(
        'raise DecodeError("trunctaed", "x")\n'
        'stats.peer_errors["doubel_vote"] += 1\n'
        'raise DecodeError(RejectReason.TRUNCATED, "x")\n'
    )
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert [_is_string(_get_reason_argument(c)) for c in calls] == [True, False]
    (subscript,) = [n for n in ast.walk(tree) if isinstance(n, ast.Subscript)]
    assert _name_of(subscript.value) in REASON_COUNTERS and _is_string(subscript.slice)
