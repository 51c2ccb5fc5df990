"""node/leaving.py: a leave's steps from the head state, the runtime's busy apps and
the time; and the chain rules it relies on (a node drains itself; an exit ends a drain)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from edgechain.chain.assembly import make_command, make_exit_request
from edgechain.chain.authority import check_command_signer, end_drains, is_own_drain
from edgechain.chain.model import AppSpec, CommandKind, RuntimeKind
from edgechain.consensus.state import BlockState, apply_block_commands, compute_genesis_state
from edgechain.errors import RejectReason, ValidationError
from edgechain.node.leaving import (
    RESEND_MS,
    LeavePhase,
    LeaveStep,
    Leaving,
    get_apps_on,
    has_left_since,
    write_left_file,
)
from edgechain.orchestrator.registry import AppRecord, AppState, Registry, put_record
from edgechain.testing import ADMIN, build_block, make_genesis
from edgechain.types import AppId, Slot

GENESIS, IDENTS = make_genesis(4, 2)
ME = IDENTS[1]
SPEC = AppSpec("counter", RuntimeKind.PROCESS, command=("/bin/true",))
APP = AppId(b"\x0a" * 32)


def head(*, draining: bool = False, apps_here: int = 0, member: bool = True) -> BlockState:
    state = compute_genesis_state(GENESIS)
    if draining:
        state = dataclasses.replace(
            state, authority=dataclasses.replace(state.authority, draining=(ME.node,))
        )
    registry = Registry()
    for i in range(apps_here):
        registry = put_record(registry, AppRecord(AppId(bytes([i + 1]) * 32), SPEC, ME.node))
    # A stopped app here does not hold a leave up (a drain moves running apps only).
    stopped = AppRecord(AppId(b"\xee" * 32), SPEC, ME.node, state=AppState.STOPPED)
    registry = put_record(registry, stopped)
    state = dataclasses.replace(state, registry=registry)
    if not member:
        members = tuple(m for m in state.validators.members if m.node != ME.node)
        state = dataclasses.replace(
            state, validators=dataclasses.replace(state.validators, members=members)
        )
    return state


def test_nothing_happens_until_asked() -> None:
    leaving = Leaving(ME.node)
    assert leaving.get_step(head(), 0) is LeaveStep.WAIT
    assert leaving.start(5) and not leaving.start(6)  # a second ask changes nothing
    assert (leaving.phase, leaving.started_ms) == (LeavePhase.DRAINING, 5)


def test_drain_then_wait_for_the_apps_then_exit_then_stop() -> None:
    leaving = Leaving(ME.node, drain_timeout_ms=60_000)
    leaving.start(0)
    assert leaving.get_step(head(apps_here=2), 0) is LeaveStep.SUBMIT_DRAIN
    assert leaving.get_step(head(apps_here=2), 1_000) is LeaveStep.WAIT
    # Not in a block yet: sent again after the resend interval.
    assert leaving.get_step(head(apps_here=2), RESEND_MS) is LeaveStep.SUBMIT_DRAIN
    # Drain on chain, apps still placed here: wait.
    assert leaving.get_step(head(draining=True, apps_here=2), 12_000) is LeaveStep.WAIT
    # The chain placed them elsewhere but the runtime still hands one over: wait.
    busy = [APP.hex()]
    assert leaving.get_step(head(draining=True), 13_000, busy) is LeaveStep.WAIT
    assert leaving.to_json(head(draining=True), busy)["apps_running_here"] == busy
    # Handed over: exit, then resend only after the interval.
    assert leaving.get_step(head(draining=True), 14_000) is LeaveStep.REQUEST_EXIT
    assert leaving.phase is LeavePhase.EXITING and leaving.apps_left_behind == ()
    assert leaving.get_step(head(draining=True), 15_000) is LeaveStep.WAIT
    assert leaving.get_step(head(draining=True), 14_000 + RESEND_MS) is LeaveStep.REQUEST_EXIT
    # Out of the set: stop, and stay stopped.
    assert leaving.get_step(head(member=False), 30_000) is LeaveStep.STOP
    assert leaving.get_step(head(), 31_000) is LeaveStep.STOP
    report = leaving.to_json(head(member=False))
    assert report["phase"] == "left" and report["apps_here"] == []


def test_a_drain_that_cannot_finish_exits_at_its_timeout_and_names_the_apps() -> None:
    leaving = Leaving(ME.node, drain_timeout_ms=60_000)
    leaving.start(0)
    leaving.get_step(head(apps_here=1), 0)
    state = head(draining=True, apps_here=1)
    assert leaving.get_step(state, 59_999, [APP.hex()]) is LeaveStep.WAIT
    assert leaving.get_step(state, 60_000, [APP.hex()]) is LeaveStep.REQUEST_EXIT
    assert set(leaving.apps_left_behind) == {AppId(b"\x01" * 32), APP}
    assert get_apps_on(state, ME.node) == (AppId(b"\x01" * 32),)


def test_a_node_outside_the_set_stops_at_once() -> None:
    for state in (None, head(member=False)):
        leaving = Leaving(ME.node)
        leaving.start(0)
        assert leaving.get_step(state, 0) is LeaveStep.STOP
        assert leaving.phase is LeavePhase.LEFT


def test_a_node_may_drain_and_undrain_itself_and_nobody_else() -> None:
    auth = compute_genesis_state(GENESIS).authority
    chain_id = GENESIS.params.chain_id
    for kind in (CommandKind.DRAIN_NODE, CommandKind.UNDRAIN_NODE):
        own = make_command(ME.sk, chain_id, 1, kind, node=ME.node)
        assert is_own_drain(own)
        check_command_signer(auth, own, 0)
    other = make_command(ME.sk, chain_id, 1, CommandKind.DRAIN_NODE, node=IDENTS[2].node)
    exclude = make_command(ME.sk, chain_id, 1, CommandKind.EXCLUDE_NODE, node=ME.node)
    for cmd in (other, exclude):
        assert not is_own_drain(cmd)
        with pytest.raises(ValidationError) as caught:
            check_command_signer(auth, cmd, 0)
        assert caught.value.reason is RejectReason.COMMAND_NOT_ADMIN


def test_an_exit_ends_the_drain_of_the_node_that_exits() -> None:
    auth = head(draining=True).authority
    assert end_drains(auth, [IDENTS[2].node]) is auth
    assert end_drains(auth, [ME.node]).draining == ()
    # Through the state transition, with and without commands in the block.
    parent = head(draining=True)
    grant = make_command(
        ADMIN.sk, GENESIS.params.chain_id, 1, CommandKind.GRANT_OPERATOR, key=IDENTS[3].pk
    )
    for commands in ((), (grant,)):
        block = build_block(
            parent=parent.block_hash, slot=Slot(1), params=GENESIS.params, vdf_iterations=10,
            producer=IDENTS[0], committee=IDENTS[2:],
            exits=(make_exit_request(ME.sk, Slot(1)),), commands=commands,
        )  # fmt: skip
        _, authority, validators = apply_block_commands(parent, block, 2)
        assert authority.draining == () and ME.node not in validators


def test_the_left_file_tells_a_finished_leave_from_an_old_one(tmp_path: Path) -> None:
    assert not has_left_since(tmp_path, 0)
    write_left_file(tmp_path, 1_000, [APP.hex()])
    assert has_left_since(tmp_path, time.time() - 60)
    assert not has_left_since(tmp_path, time.time() + 60)  # left before we asked
    assert json.loads((tmp_path / "left.json").read_text()) == {
        "left_ms": 1_000, "apps_left_behind": [APP.hex()]
    }  # fmt: skip
