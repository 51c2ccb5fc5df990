"""Signed commands against the chain state: who may sign, replay, and the app lifecycle."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from orchestrator_helpers import report

from edgechain.chain.assembly import make_command
from edgechain.chain.authority import (
    Authority,
    get_last_seq,
    is_banned,
    is_draining,
    is_operator,
)
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import (
    AppPolicy,
    AppSpec,
    CommandKind,
    PlanAction,
    PlanEntry,
    RuntimeKind,
    SignedCommand,
)
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.errors import RejectReason, ValidationError
from edgechain.orchestrator import EMPTY_REGISTRY, AppState, Registry, compute_plan, get_record
from edgechain.orchestrator.commands import (
    CommandContext,
    apply_commands,
    check_move_destination,
)
from edgechain.orchestrator.fleet import compute_app_history, compute_app_views, resolve_app
from edgechain.orchestrator.liveness import NO_STALL
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import apply_block_to_registry
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, NodeId, Slot

CHAIN = "test-chain"
ADMIN = make_identity(1, b"cmd-admin")
OPERATOR = make_identity(2, b"cmd-operator")
STRANGER = make_identity(3, b"cmd-stranger")
NODES = [make_identity(10 + i, b"cmd-node") for i in range(4)]
VALIDATORS = ValidatorSet.from_members(
    ValidatorInfo(n.node, n.pk, f"n{i}", ("eu",) if i < 2 else ()) for i, n in enumerate(NODES)
)
SPEC = AppSpec("web", RuntimeKind.PROCESS, command=("sleep", "infinity"), cpu_bp=100)


class Chain:
    """Registry and authority advanced block by block, as the consensus state does."""

    def __init__(self) -> None:
        self.registry: Registry = EMPTY_REGISTRY
        self.authority = Authority(admin_key=ADMIN.pk)
        self.slot = 0
        self.seqs: dict[bytes, int] = {}
        self.voters: ValidatorSet | None = None

    def sign(self, who: object, kind: CommandKind, **fields: object) -> SignedCommand:
        sk = who.sk  # type: ignore[attr-defined]
        pk = bytes(who.pk)  # type: ignore[attr-defined]
        self.seqs[pk] = self.seqs.get(pk, 0) + 1
        return make_command(sk, CHAIN, self.seqs[pk], kind, **fields)  # type: ignore[arg-type]

    def block(self, commands: Sequence[SignedCommand], plan: Sequence[PlanEntry] = ()) -> None:
        self.slot += 1
        registry = apply_block_to_registry(self.registry, Slot(self.slot), plan, ())
        ctx = CommandContext(
            self.authority, VALIDATORS, Slot(self.slot), min_validators=3, voters=self.voters
        )
        self.registry, self.authority = apply_commands(registry, ctx, commands)

    def refused(self, commands: Sequence[SignedCommand]) -> str:
        before = (self.registry, self.authority, self.slot)
        with pytest.raises(ValidationError) as info:
            self.block(commands)
        self.registry, self.authority, self.slot = before
        return info.value.reason

    def plan(self) -> tuple[PlanEntry, ...]:
        """The next block's plan, every validator having reported the running apps the
        registry places on it (a report of this slot: apps moved in it do not count)."""
        infos = [NodeInfo(m.node, m.labels) for m in VALIDATORS.members]
        reports = [
            report(
                m.node,
                0,
                apps=[
                    (r.app, 0, 0)
                    for r in self.registry.records
                    if r.node == m.node and r.state is AppState.RUNNING
                ],
                slot=self.slot,
            )
            for m in VALIDATORS.members
        ]
        return compute_plan(self.registry, reports, infos, Slot(self.slot + 1), 4)


def granted() -> Chain:
    chain = Chain()
    chain.block([chain.sign(ADMIN, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk)])
    return chain


def test_only_granted_keys_sign_app_commands() -> None:
    chain = Chain()
    submit = chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)
    assert chain.refused([submit]) == RejectReason.COMMAND_UNKNOWN_SIGNER
    chain.block([chain.sign(ADMIN, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk)])
    assert is_operator(chain.authority, OPERATOR.pk)
    chain.block([submit])
    assert get_record(chain.registry, compute_submitted_app_id(OPERATOR.pk, 1)) is not None
    # An operator may not grant keys; nor may a stranger.
    grant = chain.sign(OPERATOR, CommandKind.GRANT_OPERATOR, key=STRANGER.pk)
    assert chain.refused([grant]) == RejectReason.COMMAND_NOT_ADMIN
    exclude = chain.sign(STRANGER, CommandKind.EXCLUDE_NODE, node=NODES[0].node)
    assert chain.refused([exclude]) == RejectReason.COMMAND_NOT_ADMIN


def test_replayed_and_out_of_order_commands_are_refused() -> None:
    chain = granted()
    first = chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)
    second = chain.sign(OPERATOR, CommandKind.SUBMIT, spec=dataclasses.replace(SPEC, name="db"))
    chain.block([first, second])
    assert get_last_seq(chain.authority, OPERATOR.pk) == 2
    assert chain.refused([first]) == RejectReason.COMMAND_REPLAYED
    assert chain.refused([second]) == RejectReason.COMMAND_REPLAYED
    later = chain.sign(OPERATOR, CommandKind.STOP, app=app_of(1))
    earlier = chain.sign(OPERATOR, CommandKind.STOP, app=app_of(2))
    assert chain.refused([earlier, later]) == RejectReason.COMMAND_REPLAYED  # seq 4 before seq 3


def test_a_revoked_key_is_refused_from_the_next_block_and_regrant_keeps_its_seq() -> None:
    chain = granted()
    submit = chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)
    revoke = chain.sign(ADMIN, CommandKind.REVOKE_OPERATOR, key=OPERATOR.pk)
    chain.block([revoke, submit])  # same block: still checked against the parent
    assert not is_operator(chain.authority, OPERATOR.pk)
    again = chain.sign(OPERATOR, CommandKind.STOP, app=app_of(1))
    assert chain.refused([again]) == RejectReason.COMMAND_REVOKED
    chain.block([chain.sign(ADMIN, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk)])
    assert chain.refused([submit]) == RejectReason.COMMAND_REPLAYED
    chain.block([again])
    assert get_record(chain.registry, app_of(1)).state is AppState.STOPPED  # type: ignore[union-attr]


def app_of(seq: int) -> AppId:
    return compute_submitted_app_id(OPERATOR.pk, seq)


def test_lifecycle_stop_start_update_move_remove() -> None:
    chain = granted()
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)])
    app = app_of(1)
    place = chain.plan()
    assert [e.action for e in place] == [PlanAction.PLACE]
    chain.block([], place)
    home = place[0].destination
    assert get_record(chain.registry, app).node == home  # type: ignore[union-attr]

    chain.block([chain.sign(OPERATOR, CommandKind.STOP, app=app)])
    record = get_record(chain.registry, app)
    assert record is not None and record.state is AppState.STOPPED and record.node == home
    assert chain.refused([chain.sign(OPERATOR, CommandKind.STOP, app=app)]) == "command_invalid"
    chain.block([chain.sign(OPERATOR, CommandKind.START, app=app)])
    assert get_record(chain.registry, app).state is AppState.RUNNING  # type: ignore[union-attr]

    new_spec = AppSpec("web", RuntimeKind.PROCESS, command=("sleep", "1000"), cpu_bp=200)
    chain.block([chain.sign(OPERATOR, CommandKind.UPDATE, app=app, spec=new_spec)])
    record = get_record(chain.registry, app)
    assert record is not None and record.version == 2 and record.spec == new_spec
    assert record.node == home and chain.plan() == ()

    target = next(m.node for m in VALIDATORS.members if m.node != home)
    for _ in range(4):  # the protocol's minimum interval between two moves
        chain.block([])
    chain.block([chain.sign(OPERATOR, CommandKind.MOVE, app=app, node=target)])
    plan = chain.plan()
    assert plan == (PlanEntry(PlanAction.MIGRATE, app, home, target),)
    chain.block([], plan)
    record = get_record(chain.registry, app)
    assert record is not None and record.node == target and record.move_to is None

    chain.block([chain.sign(OPERATOR, CommandKind.REMOVE, app=app)])
    assert get_record(chain.registry, app) is None and chain.registry.queue == ()
    gone = chain.sign(OPERATOR, CommandKind.START, app=app)
    assert chain.refused([gone]) == "command_invalid"


def test_move_respects_the_policy_and_the_validator_set() -> None:
    chain = granted()
    eu_only = AppSpec(
        "db", RuntimeKind.PROCESS, command=("true",), policy=AppPolicy(allowed_labels=("eu",))
    )
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=eu_only)])
    chain.block([], chain.plan())
    app = app_of(1)
    home = get_record(chain.registry, app).node  # type: ignore[union-attr]
    not_eu = next(m.node for m in VALIDATORS.members if not m.labels)
    other_eu = next(m.node for m in VALIDATORS.members if m.labels and m.node != home)
    outsider = make_identity(99).node
    for node in (not_eu, outsider, home):
        move = chain.sign(OPERATOR, CommandKind.MOVE, app=app, node=node)
        assert chain.refused([move]) == "command_invalid"
    chain.block([chain.sign(OPERATOR, CommandKind.MOVE, app=app, node=other_eu)])
    assert get_record(chain.registry, app).move_to == other_eu  # type: ignore[union-attr]


def test_a_move_the_policy_refuses_names_the_part_of_the_policy() -> None:
    """What the operator would change (``apps update``) to move the app there."""
    chain = granted()
    home, target = NODES[0].node, NODES[1].node

    def refusal(policy: AppPolicy) -> str:
        spec = AppSpec(f"p{chain.slot}", RuntimeKind.PROCESS, command=("true",), policy=policy)
        chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=spec)])
        app = next(r.app for r in chain.registry.records if r.spec == spec)
        place = PlanEntry(PlanAction.PLACE, app, b"", NodeId(home))
        chain.block([], (place,))
        with pytest.raises(ValidationError) as info:
            chain.block([chain.sign(OPERATOR, CommandKind.MOVE, app=app, node=target)])
        return str(info.value)

    assert f"pinned to node {home.hex()[:16]} (policy pin_node)" in refusal(
        AppPolicy(pinned=True, pin_node=home)
    )
    assert "pinned to the node it runs on (policy pinned)" in refusal(AppPolicy(pinned=True))
    labels = refusal(AppPolicy(allowed_labels=("asia",)))
    assert f"{target.hex()[:16]} carries none of the app's allowed labels (asia)" in labels


def test_a_stopped_app_is_neither_placed_nor_moved_nor_counted() -> None:
    chain = granted()
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)])
    chain.block([chain.sign(OPERATOR, CommandKind.STOP, app=app_of(1))])
    assert chain.registry.queue == () and chain.plan() == ()
    chain.block([chain.sign(OPERATOR, CommandKind.START, app=app_of(1))])
    assert list(chain.registry.queue) == [app_of(1)]
    assert [e.action for e in chain.plan()] == [PlanAction.PLACE]


def test_admin_exclusion_bans_and_respects_the_floor() -> None:
    chain = Chain()
    chain.block([chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=NODES[0].node)])
    assert is_banned(chain.authority, NODES[0].node)
    # 4 validators, floor 3: excluding two in one block would leave 2.
    two = [
        chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=NODES[1].node),
        chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=NODES[2].node),
    ]
    assert chain.refused(two) == "command_invalid"
    malformed = chain.sign(ADMIN, CommandKind.EXCLUDE_NODE)
    assert chain.refused([malformed]) == RejectReason.COMMAND_MALFORMED


def test_admin_exclusion_may_name_a_finality_voter_that_is_no_longer_a_validator() -> None:
    """A dead device that skip blocks took out of the validator set still counts among
    the finality voters (block format 20): the admin may exclude it, but not a node
    that is neither, nor the last voter."""
    gone = make_identity(30, b"cmd-gone")
    chain = Chain()
    chain.voters = ValidatorSet.from_members(
        [*VALIDATORS.members, ValidatorInfo(gone.node, gone.pk, "gone", ())]
    )
    stranger = chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=STRANGER.node)
    assert chain.refused([stranger]) == "command_invalid"
    chain.block([chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=gone.node)])
    assert is_banned(chain.authority, gone.node)
    # Named twice in one block: the second names neither any more.
    twice = [
        chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=NODES[0].node),
        chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=NODES[0].node),
    ]
    assert chain.refused(twice) == "command_invalid"
    chain.voters = ValidatorSet.from_members([ValidatorInfo(gone.node, gone.pk, "gone", ())])
    last = chain.sign(ADMIN, CommandKind.EXCLUDE_NODE, node=gone.node)
    with pytest.raises(ValidationError, match="last finality voter"):
        chain.block([last])


def test_admin_drain_and_undrain() -> None:
    chain = granted()
    node = NODES[1].node
    drain = chain.sign(OPERATOR, CommandKind.DRAIN_NODE, node=node)
    assert chain.refused([drain]) == RejectReason.COMMAND_NOT_ADMIN
    assert chain.refused([chain.sign(ADMIN, CommandKind.UNDRAIN_NODE, node=node)]) == (
        "command_invalid"  # not draining
    )
    stranger = chain.sign(ADMIN, CommandKind.DRAIN_NODE, node=STRANGER.node)
    assert chain.refused([stranger]) == "command_invalid"  # not a validator
    chain.block([chain.sign(ADMIN, CommandKind.DRAIN_NODE, node=node)])
    assert is_draining(chain.authority, node)
    again = chain.sign(ADMIN, CommandKind.DRAIN_NODE, node=node)
    assert chain.refused([again]) == "command_invalid"  # already draining
    chain.block([chain.sign(ADMIN, CommandKind.UNDRAIN_NODE, node=node)])
    assert not is_draining(chain.authority, node)


def test_fleet_views_names_and_history() -> None:
    chain = granted()
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)])
    app = app_of(1)
    assert resolve_app(chain.registry, "web") == app
    assert resolve_app(chain.registry, app.hex()[:6]) == app
    assert resolve_app(chain.registry, app.hex()) == app
    with pytest.raises(KeyError):
        resolve_app(chain.registry, "nope")
    other = AppSpec("db", RuntimeKind.PROCESS, command=("sleep", "infinity"), cpu_bp=100)
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=other)])
    assert resolve_app(chain.registry, "db") == app_of(2)
    views = compute_app_views(chain.registry, ())
    assert [v.state for v in views] == ["queued", "queued"]
    assert all(v.reported_on == () for v in views)


def test_an_app_name_is_unique_while_the_app_exists() -> None:
    """An operator's second submission of a name (a resent ``apps submit``) is invalid,
    from any key and within one block too; so is an UPDATE renaming an app to another
    app's name. An UPDATE keeping its own name is fine, and a REMOVE frees the name."""
    chain = granted()
    chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)])
    with pytest.raises(ValidationError, match="an app named 'web' exists"):
        chain.block([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)])
    with pytest.raises(ValidationError, match="exists"):
        chain.block([chain.sign(ADMIN, CommandKind.SUBMIT, spec=SPEC)])
    db = AppSpec("db", RuntimeKind.PROCESS, command=("sleep", "infinity"), cpu_bp=100)
    twice = [chain.sign(OPERATOR, CommandKind.SUBMIT, spec=db) for _ in range(2)]
    assert chain.refused(twice) == "command_invalid"
    chain.block(twice[:1])
    web = get_record(chain.registry, app_of(1))
    db_app = resolve_app(chain.registry, "db")
    assert web is not None and web.spec.name == "web"
    bigger = dataclasses.replace(db, cpu_bp=200)
    chain.block([chain.sign(OPERATOR, CommandKind.UPDATE, app=db_app, spec=bigger)])
    as_web = dataclasses.replace(db, name="web")
    update = chain.sign(OPERATOR, CommandKind.UPDATE, app=db_app, spec=as_web)
    with pytest.raises(ValidationError, match=r"'web' exists .*: choose another name"):
        chain.block([update])
    chain.block([chain.sign(OPERATOR, CommandKind.REMOVE, app=web.app)])
    chain.block([chain.sign(OPERATOR, CommandKind.UPDATE, app=db_app, spec=as_web)])
    assert chain.refused([chain.sign(OPERATOR, CommandKind.SUBMIT, spec=SPEC)]) == (
        "command_invalid"
    )
    assert [r.spec.name for r in chain.registry.records] == ["web"]


def test_history_comes_from_the_blocks() -> None:
    from edgechain.testing import build_block, make_genesis

    genesis, idents = make_genesis(4, committee_size=2, difficulty=10)
    node = NodeId(idents[1].node)
    submit = make_command(ADMIN.sk, CHAIN, 1, CommandKind.SUBMIT, spec=SPEC)
    app = compute_submitted_app_id(ADMIN.pk, 1)
    common = {"params": genesis.params, "vdf_iterations": 10, "producer": idents[0],
              "committee": idents[1:3]}  # fmt: skip
    first = build_block(parent=BlockHash(bytes(32)), slot=Slot(1), commands=(submit,), **common)  # type: ignore[arg-type]
    place = PlanEntry(PlanAction.PLACE, app, b"", node)
    second = build_block(parent=BlockHash(bytes(32)), slot=Slot(2), plan=(place,), **common)  # type: ignore[arg-type]
    history = compute_app_history(
        app,
        [
            (BlockHash(b"\x01" * 32), first, EMPTY_REGISTRY),
            (BlockHash(b"\x02" * 32), second, EMPTY_REGISTRY),
        ],
    )
    assert [(e.kind, e.slot) for e in history] == [("submit", 1), ("place", 2)]
    assert history[0].signer == ADMIN.pk and history[0].version == 1
    assert history[1].node == node


def test_the_api_check_of_a_move_names_a_draining_or_down_node() -> None:
    chain = granted()
    chain.block([chain.sign(ADMIN, CommandKind.DRAIN_NODE, node=NODES[1].node)])
    app = app_of(1)
    seen = {NodeId(n.node): Slot(20) for n in NODES[:3]}  # NODES[3] silent since genesis

    def check(node: bytes, kind: CommandKind = CommandKind.MOVE) -> None:
        fields: dict[str, object] = {"node": node}
        if kind is CommandKind.MOVE:
            fields["app"] = app
        cmd = chain.sign(ADMIN, kind, **fields)
        check_move_destination(cmd, chain.authority, seen, Slot(24), 12, NO_STALL)

    check(NODES[2].node)  # active: the planner can carry it out
    with pytest.raises(ValidationError, match="is draining") as info:
        check(NODES[1].node)
    assert info.value.reason == RejectReason.COMMAND_INVALID
    with pytest.raises(ValidationError, match="is down"):
        check(NODES[3].node)
    seen[NodeId(NODES[3].node)] = Slot(13)  # last seen 11 slots ago: not down yet
    check(NODES[3].node)
    check(NODES[1].node, CommandKind.UNDRAIN_NODE)  # only a MOVE is checked
