"""The canonical state encoding (``consensus/state_codec.py``): an exact round trip on
every state real runs produce, one encoding per state whatever the dict order, a root
that moves with every field, and strict decoding of anything malformed."""

from __future__ import annotations

import dataclasses
import struct
import tracemalloc
from collections.abc import Callable, Iterable

import pytest

from edgechain.chain.encoding_primitives import Writer
from edgechain.chain.finality import CheckpointRecord, FinalityState
from edgechain.chain.model import (
    AppPolicy,
    AppSpec,
    AppUsage,
    Checkpoint,
    CommandKind,
    Coordinate,
    RuntimeKind,
)
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.consensus import state_codec
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.memo import Memo
from edgechain.consensus.state_codec import (
    MAX_STATE_BYTES,
    STATE_FORMAT_VERSION,
    compute_state_root,
    decode_state,
    encode_state,
    get_state_root,
)
from edgechain.consensus.state_codec_fields import StateLimits
from edgechain.errors import DecodeError, RejectReason
from edgechain.orchestrator.liveness import STALL_MIN_SLOTS, Stall
from edgechain.orchestrator.registry import AppRecord, AppState, Registry
from edgechain.sim.runner import SimConfig, Simulation
from edgechain.testing import ADMIN
from edgechain.types import AppId, BlockHash, NodeId, PublicKey, Slot

from .test_engine import Harness
from .test_engine_commands import OPERATOR, SPEC, admin, include, operator

REORG = SimConfig(
    nodes=12, committee=3, slots=31, seed=3, preset_genesis=True, apps=12, faults="reorg-apps"
)
"""Apps placed, migrated, replicated and MOVEd by the admin, a reorg, skip blocks."""


def _distinct(states: Iterable[BlockState]) -> list[BlockState]:
    return list({id(s): s for s in states}.values())


@pytest.fixture(scope="module")
def sim_states() -> list[BlockState]:
    sim = Simulation(REORG)
    sim.run()
    return _distinct(s for node in sim.nodes for s in node.engine.states.values())


@pytest.fixture(scope="module")
def command_states() -> list[BlockState]:
    """Operators granted and revoked, a node draining, a node banned, an operator's app."""
    net = Harness(7)
    net.start_chain()
    slot = include(net, admin(1, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk), 1)
    slot = include(net, operator(1, CommandKind.SUBMIT, spec=SPEC), slot)
    slot = include(net, admin(2, CommandKind.DRAIN_NODE, node=net.order[4]), slot)
    slot = include(net, admin(3, CommandKind.REVOKE_OPERATOR, key=OPERATOR.pk), slot)
    slot = include(net, admin(4, CommandKind.EXCLUDE_NODE, node=net.order[6]), slot)
    net.run_slot(slot)
    return _distinct(s for e in net.engines.values() for s in e.states.values())


@pytest.fixture(scope="module")
def small(command_states: list[BlockState]) -> bytes:
    """A small real encoding holding an app, a report, authority entries and finality."""
    state = max(command_states, key=lambda s: s.slot)
    assert state.registry.records and state.reports and state.authority.banned
    return encode_state(state)


def _assert_round_trip(state: BlockState) -> bytes:
    data = encode_state(state)
    decoded = decode_state(data)
    assert decoded == state
    assert encode_state(decoded) == data
    assert compute_state_root(decoded) == compute_state_root(state)
    return data


def _error(data: bytes) -> RejectReason:
    with pytest.raises(DecodeError) as info:
        decode_state(data)
    return info.value.reason


# --- round trip on real states ---------------------------------------------------------


def test_every_simulated_state_round_trips(sim_states: list[BlockState]) -> None:
    for state in sim_states:
        _assert_round_trip(state)
    records = [r for s in sim_states for r in s.registry.records]
    assert records and any(s.registry.queue for s in sim_states)
    assert any(r.move_to for r in records) and any(r.moved_by_operator for r in records)
    assert any(r.replica_node for r in records) and any(r.previous_node for r in records)
    assert any(r.vote is not None for s in sim_states for r in s.reports)
    assert any(s.is_skip for s in sim_states)
    assert any(s.finality and any(s.finality.tallies.values()) for s in sim_states)


def test_every_state_of_a_chain_with_commands_round_trips(
    command_states: list[BlockState],
) -> None:
    for state in command_states:
        _assert_round_trip(state)
    auths = [s.authority for s in command_states]
    assert any(a.operators for a in auths) and any(a.revoked for a in auths)
    assert any(a.banned for a in auths) and any(a.draining for a in auths)
    assert max(len(a.sequences) for a in auths) == 2


def _stopped_record(node: NodeId) -> AppRecord:
    spec = AppSpec(
        "all-fields",
        RuntimeKind.CONTAINER,
        image="img:1",
        command=("a", "é"),
        cpu_bp=7,
        ram_bp=9,
        stateful=True,
        policy=AppPolicy(True, bytes(node), ("edge", "gpu"), "db", 3, wait_for_state=True),
        replica_interval_slots=4,
        cpu_limit_millicores=500,
        memory_limit_bytes=2**40,
        state_limit_bytes=2**63,
        run_as_root=True,
    )
    return AppRecord(
        AppId(b"\x01" * 32), spec, node, Slot(5), AppState.STOPPED, 3, ADMIN.pk, Slot(2),
        move_to=NodeId(b"\x02" * 32), replica_node=NodeId(b"\x03" * 32),
        previous_node=NodeId(b"\x04" * 32), moved_by_operator=True,
        state_node=NodeId(b"\x05" * 32), replica_slot=Slot(4), move_landed=False,
        state_slot=Slot(6),
    )  # fmt: skip


def _rich(state: BlockState) -> BlockState:
    """``state`` with every optional field set, three distinct validator sets, two tally
    targets and a report on apps (simulated nodes report none)."""
    assert state.finality is not None
    members = state.validators.members
    fewer = ValidatorSet(members[1:])
    other = ValidatorSet((*members[2:], dataclasses.replace(members[0], report_key=b"")))
    queued = AppRecord(AppId(b"\x09" * 32), SPEC)
    registry = Registry((_stopped_record(members[0].node), queued), (queued.app,))
    epoch = state.finality.justified.epoch
    targets = [Checkpoint(epoch + i, BlockHash(bytes([i]) * 32)) for i in (1, 2)]
    finality = FinalityState(
        state.finality.justified,
        state.finality.finalized,
        fewer,
        tuple(CheckpointRecord(t, vs) for t, vs in zip(targets, (other, fewer), strict=True)),
        {targets[0]: frozenset(m.node for m in members[:3]), targets[1]: frozenset()},
    )
    usage = AppUsage(queued.app, 1, 2, 3, 2**40, 5, state_bytes=6)
    report = dataclasses.replace(state.reports[0], apps=(usage, usage))
    return dataclasses.replace(
        state, registry=registry, finality=finality, reports=(report, *state.reports[1:])
    )


def test_hand_built_states_round_trip(command_states: list[BlockState]) -> None:
    state = max(command_states, key=lambda s: s.slot)
    rich = _rich(state)
    _assert_round_trip(rich)
    _assert_round_trip(dataclasses.replace(rich, finality=None, last_seen={}))
    decoded = decode_state(encode_state(rich))
    assert decoded.finality is not None
    assert decoded.finality.voters is decoded.finality.checkpoints[1].validators


def test_equal_validator_sets_are_encoded_once_and_shared(sim_states: list[BlockState]) -> None:
    state = max(sim_states, key=lambda s: s.slot)
    assert state.finality is not None
    copies = dataclasses.replace(
        state,
        validators=ValidatorSet(state.validators.members),
        finality=dataclasses.replace(
            state.finality,
            voters=ValidatorSet(state.validators.members),
            checkpoints=tuple(
                CheckpointRecord(r.checkpoint, ValidatorSet(r.validators.members))
                for r in state.finality.checkpoints
            ),
        ),
    )
    data = encode_state(state)
    assert encode_state(copies) == data
    decoded = decode_state(data)
    assert decoded.finality is not None
    if state.finality.voters == state.validators:
        assert decoded.finality.voters is decoded.validators
    # Named 2 + len(checkpoints) times, written once.
    assert all(r.validators == state.validators for r in state.finality.checkpoints)
    assert data.count(_set_bytes(state.validators)) == 1


def test_memoised_root_is_the_root_and_not_fooled_by_a_reused_hash(
    command_states: list[BlockState],
) -> None:
    state = max(command_states, key=lambda s: s.slot)
    memo = Memo(randomness=bytes(32))
    assert get_state_root(memo, state) == compute_state_root(state)
    assert get_state_root(memo, dataclasses.replace(state)) == compute_state_root(state)
    other = dataclasses.replace(state, difficulty=state.difficulty + 1)
    assert get_state_root(memo, other) == compute_state_root(other) != compute_state_root(state)


# --- canonical -------------------------------------------------------------------------


def test_mapping_order_does_not_change_the_encoding(command_states: list[BlockState]) -> None:
    state = _rich(max(command_states, key=lambda s: s.slot))
    assert state.finality is not None and len(state.last_seen) > 2
    shuffled = dataclasses.replace(
        state,
        last_seen=dict(reversed(list(state.last_seen.items()))),
        finality=dataclasses.replace(
            state.finality,
            tallies={
                t: frozenset(sorted(nodes, reverse=True))
                for t, nodes in reversed(list(state.finality.tallies.items()))
            },
        ),
    )
    assert list(shuffled.last_seen) != list(state.last_seen)
    assert encode_state(shuffled) == encode_state(state)
    assert compute_state_root(shuffled) == compute_state_root(state)


def test_the_root_moves_with_every_field(command_states: list[BlockState]) -> None:
    state = _rich(max(command_states, key=lambda s: s.slot))
    assert state.finality is not None
    node = next(iter(state.last_seen))
    report = state.reports[0]
    record = state.registry.records[0]
    fin = state.finality
    target = next(iter(fin.tallies))
    mutations: list[Callable[[BlockState], BlockState]] = [
        lambda s: dataclasses.replace(s, block_hash=BlockHash(b"\xff" * 32)),
        lambda s: dataclasses.replace(s, slot=Slot(s.slot + 1)),
        lambda s: dataclasses.replace(s, seed=b"\xee" * 32),
        lambda s: dataclasses.replace(s, difficulty=s.difficulty + 1),
        lambda s: dataclasses.replace(s, is_skip=not s.is_skip),
        lambda s: dataclasses.replace(s, last_seen={**s.last_seen, node: Slot(s.slot + 9)}),
        lambda s: dataclasses.replace(s, coordinates={**s.coordinates, node: Coordinate(-1, 2)}),
        lambda s: dataclasses.replace(s, stall=Stall(Slot(0), Slot(s.slot))),
        lambda s: dataclasses.replace(
            s, reports=(dataclasses.replace(report, cpu_bp=report.cpu_bp + 1), *s.reports[1:])
        ),
        lambda s: dataclasses.replace(s, reports=s.reports[1:]),
        lambda s: dataclasses.replace(
            s, registry=Registry((dataclasses.replace(record, version=4), *s.registry.records[1:]),
                                 s.registry.queue)),
        lambda s: dataclasses.replace(s, registry=Registry(s.registry.records, ())),
        lambda s: dataclasses.replace(
            s, authority=dataclasses.replace(s.authority, draining=(node,))
        ),
        lambda s: dataclasses.replace(
            s, authority=dataclasses.replace(s.authority, sequences=((ADMIN.pk, 99),))
        ),
        lambda s: dataclasses.replace(
            s, validators=ValidatorSet(s.validators.members[:-1])
        ),
        lambda s: dataclasses.replace(s, finality=None),
        lambda s: dataclasses.replace(s, finality=dataclasses.replace(fin, voters=s.validators)),
        lambda s: dataclasses.replace(
            s, finality=dataclasses.replace(fin, tallies={**fin.tallies, target: frozenset()})
        ),
    ]  # fmt: skip
    roots = [compute_state_root(state)] + [compute_state_root(m(state)) for m in mutations]
    assert len(set(roots)) == len(roots)
    assert all(len(root) == 32 for root in roots)


def test_the_root_leaves_out_the_signer_count(command_states: list[BlockState]) -> None:
    """Nodes may hold one block with different attestations (the hash does not cover
    them): the signer count is encoded, but the root does not depend on it."""
    state = max(command_states, key=lambda s: s.slot)
    more = dataclasses.replace(state, signers=state.signers + 1)
    assert encode_state(more) != encode_state(state)
    assert decode_state(encode_state(more)) == more
    assert compute_state_root(more) == compute_state_root(state)


# --- malformed input -------------------------------------------------------------------


def test_every_truncation_is_a_decode_error(small: bytes) -> None:
    for end in range(len(small)):
        with pytest.raises(DecodeError):
            decode_state(small[:end])


def test_trailing_bytes_version_and_size_are_checked(small: bytes) -> None:
    assert _error(small + b"\x00") == RejectReason.TRAILING_BYTES
    assert small[0] == STATE_FORMAT_VERSION
    for version in (0, STATE_FORMAT_VERSION - 1, STATE_FORMAT_VERSION + 1, 255):
        assert _error(bytes([version]) + small[1:]) == RejectReason.BAD_VERSION
    assert _error(bytes([STATE_FORMAT_VERSION]) + bytes(MAX_STATE_BYTES)) == RejectReason.TOO_LARGE


def test_huge_counts_are_refused_before_allocating() -> None:
    version = bytes([STATE_FORMAT_VERSION])
    assert _error(version + struct.pack(">I", 2**32 - 1)) == RejectReason.TOO_MANY
    # One set declaring the most validators allowed, with no bytes to hold them.
    claim = version + struct.pack(">II", 1, StateLimits.MAX_VALIDATORS) + bytes(1_000)
    # Once untraced first: whatever the first decode loads or caches is not the claim's.
    assert _error(claim) == RejectReason.TRUNCATED
    tracemalloc.start()
    try:
        assert _error(claim) == RejectReason.TRUNCATED
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def _differing_byte(a: bytes, b: bytes) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


def test_booleans_enums_and_presence_flags_are_strict(command_states: list[BlockState]) -> None:
    """Each case differs from its base in one flag or enum byte: 2, 7 or 255 there is
    refused."""
    plain = max(command_states, key=lambda s: s.slot)
    rich = _rich(plain)
    assert plain.finality is not None
    flat = dataclasses.replace(  # one validator set, so finality=None keeps the table
        plain,
        finality=dataclasses.replace(
            plain.finality,
            voters=plain.validators,
            checkpoints=tuple(
                CheckpointRecord(r.checkpoint, plain.validators) for r in plain.finality.checkpoints
            ),
        ),
    )
    record = rich.registry.records[0]
    running = Registry(
        (dataclasses.replace(record, state=AppState.RUNNING), *rich.registry.records[1:]),
        rich.registry.queue,
    )
    no_move = Registry(
        (dataclasses.replace(record, move_to=None), *rich.registry.records[1:]),
        rich.registry.queue,
    )
    cases = [
        (rich, dataclasses.replace(rich, is_skip=not rich.is_skip), RejectReason.BAD_BOOL),
        (flat, dataclasses.replace(flat, finality=None), RejectReason.BAD_BOOL),
        (rich, dataclasses.replace(rich, registry=running), RejectReason.BAD_ENUM),
        (rich, dataclasses.replace(rich, registry=no_move), RejectReason.BAD_BOOL),
    ]
    for base_state, other, reason in cases:
        base = encode_state(base_state)
        pos = _differing_byte(base, encode_state(other))
        for bad in (2, 7, 255):
            assert _error(base[:pos] + bytes([bad]) + base[pos + 1 :]) == reason


def _set_bytes(vs: ValidatorSet) -> bytes:
    w = Writer()
    state_codec._write_validator_set(w, vs)
    return bytes(w.buf)


def test_non_canonical_encodings_are_refused(command_states: list[BlockState]) -> None:
    state = max(command_states, key=lambda s: s.slot)
    data = encode_state(dataclasses.replace(state, finality=None))
    # Unsorted last_seen: swap its first two entries.
    entries = [bytes(n) + struct.pack(">Q", s) for n, s in sorted(state.last_seen.items())]
    at = data.index(entries[0] + entries[1])
    swapped = data[:at] + entries[1] + entries[0] + data[at + 80 :]
    assert _error(swapped) == RejectReason.MALFORMED
    # A set index that names no set, or skips ahead.
    at = data.index(state.seed) + 32
    assert _error(data[:at] + struct.pack(">I", 1) + data[at + 4 :]) == RejectReason.MALFORMED
    # A repeated table entry, and an unused one.
    one = _set_bytes(state.validators)
    head = 1 + 4 + len(one)
    rest = data[head:]
    version = bytes([STATE_FORMAT_VERSION])
    twice = version + struct.pack(">I", 2) + one + one + rest
    assert _error(twice) == RejectReason.MALFORMED
    unused = version + struct.pack(">I", 2) + one + _set_bytes(ValidatorSet(())) + rest
    assert _error(unused) == RejectReason.MALFORMED
    # A tally naming a voter twice.
    rich = _rich(state)
    assert rich.finality is not None
    voters = sorted(next(iter(rich.finality.tallies.values())))
    good = encode_state(rich)
    at = good.index(b"".join(voters))
    doubled = good[:at] + voters[0] + voters[0] + b"".join(voters[2:]) + good[at + 32 * 3 :]
    assert _error(doubled) == RejectReason.MALFORMED


def test_a_stall_must_be_long_enough_and_not_after_the_state(
    command_states: list[BlockState],
) -> None:
    """A stall is at least ``STALL_MIN_SLOTS`` slots without a block, and ends no later
    than the state's slot: anything else decodes to an error, not a state."""
    state = dataclasses.replace(max(command_states, key=lambda s: s.slot), finality=None)
    assert state.slot > STALL_MIN_SLOTS
    good = Stall(Slot(0), Slot(STALL_MIN_SLOTS + 1))
    assert decode_state(encode_state(dataclasses.replace(state, stall=good))).stall == good
    for bad in (
        Stall(Slot(1), Slot(STALL_MIN_SLOTS + 1)),  # too short
        Stall(Slot(2), Slot(0)),  # backwards
        Stall(Slot(0), Slot(state.slot + 1)),  # after the state
    ):
        data = encode_state(dataclasses.replace(state, stall=bad))
        assert _error(data) == RejectReason.MALFORMED, bad


def test_any_accepted_mutation_reencodes_to_itself(small: bytes) -> None:
    """One encoding per state: a flipped byte is refused, or what it decodes to encodes
    back to exactly those bytes."""
    accepted = 0
    for pos in range(len(small)):
        for flip in (0x01, 0xFF):
            data = small[:pos] + bytes([small[pos] ^ flip]) + small[pos + 1 :]
            try:
                state = decode_state(data)
            except DecodeError:
                continue
            accepted += 1
            assert encode_state(state) == data, pos
    assert accepted > len(small) // 2


# --- the format's constants ------------------------------------------------------------


def test_app_state_codes_cover_the_enum() -> None:
    assert set(state_codec._APP_STATES) == set(AppState)


def test_minimum_sizes_are_lower_bounds() -> None:
    w = Writer()
    state_codec._write_app_record(w, AppRecord(AppId(bytes(32)), AppSpec("", RuntimeKind.PROCESS)))
    assert len(w.buf) >= state_codec._MIN_RECORD_SIZE
    w = Writer()
    info = ValidatorInfo(NodeId(bytes(32)), PublicKey(bytes(48)), "", ())
    state_codec._write_validator(w, info)
    assert len(w.buf) >= state_codec._MIN_VALIDATOR_SIZE
