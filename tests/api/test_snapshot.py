"""The dashboard's snapshot (``api/snapshot.py``) of a small world, and its cost at scale.

The world is real chain state: blocks (signatures left empty: nothing here validates
them) applied with the consensus transition ``apply_block`` on a genesis of
``edgechain.testing``, the app commands signed by the test admin. The node reading it is
a real :class:`NodeQueries` (the queries the API calls, the new ones included) over an
engine stand-in holding those blocks and states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import psutil
import pytest

from edgechain.api.snapshot import SHORT_HEX, compute_snapshot
from edgechain.chain.assembly import make_command
from edgechain.chain.attestation import compute_bitfield
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.encoding import VDF_FORM_SIZE, compute_block_hash
from edgechain.chain.model import (
    NO_REPORT_SIGNATURE,
    NO_SIGNATURE,
    AnyBlock,
    AppSpec,
    AppUsage,
    Block,
    ChainParams,
    CommandKind,
    PlanAction,
    PlanEntry,
    ResourceReport,
    RuntimeKind,
    SignedCommand,
    SkipBlock,
)
from edgechain.consensus.roles import Role, compute_roles
from edgechain.consensus.state import (
    BlockState,
    Memo,
    apply_block,
    compute_genesis_state,
    get_slot_start_ms,
)
from edgechain.errors import StoreError
from edgechain.node import CommandReceipt
from edgechain.node.events import AcceptedBlock
from edgechain.node.leaving import Leaving
from edgechain.node.queries import NodeQueries
from edgechain.node.seeds import SeedContacts
from edgechain.orchestrator.registry import AppRecord, Registry
from edgechain.testing import ADMIN, make_genesis, make_identity
from edgechain.types import AppId, BlockHash, NodeId, Slot


def short(value: bytes) -> str:
    return value.hex()[:SHORT_HEX]


class Chain:
    """What ``NodeQueries`` reads of a ``ConsensusEngine``: blocks, states, head, memo."""

    def __init__(self, params: ChainParams, genesis: BlockState) -> None:
        self.params = params
        self.memo = Memo(b"\x07" * 32)
        self.blocks: dict[BlockHash, AnyBlock] = {}
        self.states: dict[BlockHash, BlockState] = {genesis.block_hash: genesis}
        self.head: BlockHash = genesis.block_hash

    def get_head_state(self) -> BlockState:
        return self.states[self.head]

    def get_chain(self) -> list[BlockHash]:
        """Head chain hashes, oldest first, genesis exclusive (as the engine's)."""
        out = []
        block_hash = self.head
        while block_hash in self.blocks:
            out.append(block_hash)
            block_hash = self.blocks[block_hash].parent
        return out[::-1]


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class Peers:
    def get_peers(self) -> list[object]:
        return [object(), object()]


class World(NodeQueries):
    """A node (``NodeQueries``, as is) over a chain built block by block."""

    def __init__(
        self, nodes: int, committee: int, registry: Registry | None = None, **params: object
    ) -> None:
        genesis, idents = make_genesis(nodes, committee, **params)
        state = compute_genesis_state(genesis)
        if registry is not None:
            state = dataclasses.replace(state, registry=registry)
        self.chain = Chain(genesis.params, state)
        self.params = genesis.params
        self.idents = idents
        self.engine = cast(Any, self.chain)
        self.now = Clock(genesis.params.genesis_time_ms)
        self.clock = cast(Any, self.now)
        self.recorder = cast(Any, type("Recorder", (), {"accepted": deque()})())
        self.dht = cast(Any, Peers())
        self.process = psutil.Process()
        self.node_id = idents[0].node
        self.pk = idents[0].pk
        self.results: list[dict[str, Any]] = []
        self.apps = cast(Any, self)  # get_migrations reads ``apps.results``
        self.seq = 0
        self.leaving = Leaving(self.node_id)
        self.seeds = SeedContacts((), random.Random(0))

    def leave(self) -> dict[str, Any]:
        return self.leaving.to_json(None)

    def _stop_on_store_failure(self, exc: StoreError) -> None:
        self.store_failure = exc  # as Node does (it then stops)

    def roles_on(self, parent: BlockState, slot: int) -> Any:
        keys = parent.validators.get_public_keys()
        return compute_roles(keys, parent.seed, Slot(slot), self.params.committee_size)

    def add(
        self,
        *,
        skip: bool = False,
        reports: Sequence[ResourceReport] = (),
        plan: Sequence[PlanEntry] = (),
        commands: Sequence[SignedCommand] = (),
        votes: int | None = None,
        parent: BlockHash | None = None,
        record: bool = True,
        head: bool = True,
    ) -> BlockHash:
        """A block (or skip block) on ``parent`` (default: the head) at the next slot,
        produced (or excluding) its elected producer, ``votes`` of its committee signing
        (default all); accepted by this node ``record``, the new head if ``head``."""
        parent_hash = parent or self.chain.head
        before = self.chain.states[parent_hash]
        slot = Slot(before.slot + 1)
        roles = self.roles_on(before, slot)
        size = len(roles.committee)
        signers = compute_bitfield(range(size if votes is None else votes), size)
        producer = next(m.node for m in before.validators.members if m.public_key == roles.producer)
        block: AnyBlock
        if skip:
            block = SkipBlock(parent_hash, slot, producer, signers, NO_SIGNATURE)
        else:
            block = Block(
                parent=parent_hash,
                slot=slot,
                epoch=0,
                producer=producer,
                timestamp_ms=get_slot_start_ms(self.params, slot) + 300,
                difficulty=before.difficulty,
                vdf_output=(hashlib.sha256(bytes(parent_hash)).digest() * 4)[:VDF_FORM_SIZE],
                vdf_proof=bytes(VDF_FORM_SIZE),
                state_root=bytes(32),
                reports=tuple(sorted(reports, key=lambda r: r.node)),
                plan=tuple(plan),
                inclusions=(),
                exits=(),
                commands=tuple(commands),
                producer_signature=NO_SIGNATURE,
                signers=signers,
                aggregate_signature=NO_SIGNATURE,
            )
        block_hash = compute_block_hash(block)
        self.chain.blocks[block_hash] = block
        self.chain.states[block_hash] = apply_block(before, block, block_hash, self.params)
        if head:
            self.chain.head = block_hash
        accepted_ms = get_slot_start_ms(self.params, slot) + 700
        if record:
            self.recorder.accepted.append(
                AcceptedBlock(block_hash.hex(), slot, skip, size, None, None, accepted_ms)
            )
        self.now.now = accepted_ms
        return block_hash

    def submit_command(self, command: SignedCommand) -> CommandReceipt:
        raise AssertionError("the snapshot only reads")

    def submit_app(self, spec: AppSpec) -> CommandReceipt:
        raise AssertionError("the snapshot only reads")

    def submit(self, name: str) -> tuple[AppId, SignedCommand]:
        self.seq += 1
        spec = AppSpec(name=name, runtime=RuntimeKind.PROCESS, command=("/bin/true",))
        command = make_command(
            ADMIN.sk, self.params.chain_id, self.seq, CommandKind.SUBMIT, spec=spec
        )
        return compute_submitted_app_id(ADMIN.pk, self.seq), command

    def report(self, index: int, cpu_bp: int, apps: Sequence[tuple[AppId, int]]) -> ResourceReport:
        slot = self.chain.get_head_state().slot
        usage = tuple(AppUsage(app, cpu, cpu // 2, 0, cpu * 10, 0) for app, cpu in apps)
        node = self.idents[index].node
        return ResourceReport(node, slot, 0, cpu_bp, 3000, 0, 0, usage, NO_REPORT_SIGNATURE, 120)


@pytest.fixture
def world() -> World:
    """5 validators, committee 2: two apps submitted, placed, reported, one migrated (this
    node measured it), a skip block, a block on a losing branch, a block never logged.
    The initial difficulty is a genesis parameter chosen so that the seeds make the skip
    block exclude n[3] (block format 21: 2; 20: 3; 19: 3; 18: 6; 17: 2; 16: 10; 15: 3; 14: 2;
    13: 3; 11: 7): block hashes fix who is elected."""
    w = World(5, 2, initial_difficulty=2)
    web, submit_web = w.submit("web")
    db, submit_db = w.submit("db")
    n = [i.node for i in w.idents]
    w.add(commands=[submit_web, submit_db])
    w.add(
        plan=[
            PlanEntry(PlanAction.PLACE, web, b"", n[1]),
            PlanEntry(PlanAction.PLACE, db, b"", n[2]),
        ]
    )
    w.add(reports=[w.report(1, 2500, [(web, 1200)]), w.report(2, 800, [(db, 300)])], votes=1)
    fork_point = w.chain.head
    w.add(skip=True)
    w.add(parent=fork_point, head=False)  # the losing branch of the same slot
    w.add(plan=[PlanEntry(PlanAction.MIGRATE, web, n[1], n[4])], record=False)
    w.add(plan=[PlanEntry(PlanAction.REPLICA, db, n[2], n[0])])
    migrate_slot = w.chain.states[w.chain.head].slot - 1
    for attempt, outcome in enumerate(("failed", "completed")):
        w.results.append(
            {
                "app": short(web),
                "name": "web",
                "slot": migrate_slot,
                "to": short(n[4]),
                "attempt": attempt,
                "outcome": outcome,
                "reason": "",
                "save_ms": 12.5 + attempt,
                "transmit_ms": 40.0,
                "resume_ms": 7.25,
                "raw_bytes": 9000,
                "compressed_bytes": 3000,
                "live": False,
            }
        )
    w.results.append({"app": "ffff", "slot": 1, "to": "ee", "attempt": 0})  # not on chain
    w.now.now = get_slot_start_ms(w.params, migrate_slot + 2) + 100  # the next slot
    return w


def test_snapshot_of_a_small_world(world: World) -> None:
    snap = compute_snapshot(world)
    assert json.loads(json.dumps(snap)) == snap
    assert set(snap) == {"node", "blocks", "nodes", "apps", "migrations"}
    head = world.chain.get_head_state()
    n = [short(i.node) for i in world.idents]

    me = snap["node"]
    slot, roles = world.get_slot_roles()
    assert roles is not None and slot == head.slot + 1
    assert me == {
        "id": n[0],
        "chain_id": "testnet",
        "slot": head.slot + 1,
        "head": short(head.block_hash),
        "head_slot": head.slot,
        "role": roles.get_role(world.pk).value,
        "peers": 2,
        "validators": 4,  # the skip block excluded its silent producer
        "rss_mb": me["rss_mb"],
        "slot_duration_ms": 2000,
        "committee_size": 2,
    }
    assert me["rss_mb"] > 10

    # the head chain only (not the losing branch), oldest first
    blocks = snap["blocks"]
    chain = world.get_head_chain()
    assert [b["hash"] for b in blocks] == [short(e.block_hash) for e in chain]
    assert [b["slot"] for b in blocks] == [1, 2, 3, 4, 5, 6]
    assert [b["skip"] for b in blocks] == [False, False, False, True, False, False]
    assert [b["signers"] for b in blocks] == [2, 2, 1, 2, 2, 2]
    assert {b["committee"] for b in blocks} == {2}
    skip = chain[3].block
    assert isinstance(skip, SkipBlock) and blocks[3]["by"] == short(skip.excluded)
    producer = chain[0].block
    assert isinstance(producer, Block) and blocks[0]["by"] == short(producer.producer)
    start = world.params.genesis_time_ms
    assert [b["accepted_ms"] for b in blocks] == [
        None if s == 5 else start + s * 2000 + 700 for s in range(1, 7)
    ]

    # validators after the exclusion, with this slot's roles and their latest reports
    nodes = {v["id"]: v for v in snap["nodes"]}
    excluded = short(skip.excluded)
    assert excluded == n[3]  # keys and seeds are deterministic
    assert set(nodes) == set(n) - {excluded}
    assert [v["role"] for v in snap["nodes"]].count("producer") == 1
    assert [v["role"] for v in snap["nodes"]].count("committee") == 2
    for info in head.validators.members:
        assert nodes[short(info.node)]["role"] == roles.get_role(info.public_key).value
    assert {v["status"] for v in snap["nodes"]} == {"active"}
    ids = {a["name"]: a["id"] for a in snap["apps"]}
    web, db = ids["web"], ids["db"]
    assert nodes[n[1]]["cpu_bp"] == 2500 and nodes[n[1]]["pressure_bp"] == 120
    assert nodes[n[1]]["ram_bp"] == 3000 and nodes[n[1]]["report_slot"] == 2
    assert nodes[n[1]]["apps"] == [
        {"id": web, "cpu_bp": 1200, "ram_bp": 600, "net_bytes_per_s": 12_000}
    ]
    assert nodes[n[2]]["apps"] == [
        {"id": db, "cpu_bp": 300, "ram_bp": 150, "net_bytes_per_s": 3_000}
    ]
    silent = [v for k, v in nodes.items() if k not in (n[1], n[2])]
    assert all(v["cpu_bp"] is None and v["apps"] == [] for v in silent)

    # the registry
    apps = {a["name"]: a for a in snap["apps"]}
    assert apps["web"] == {
        "id": web,
        "name": "web",
        "state": "running",
        "node": n[4],
        "runtime": "process",
        "move_to": None,
        "last_move_slot": 5,
    }
    assert apps["db"]["node"] == n[2] and apps["db"]["last_move_slot"] == 2

    # placements and the migration (not the replica), newest last, with this node's
    # latest measurement of the migration
    assert snap["migrations"] == [
        {"slot": 2, "action": "place", "app": web, "name": "web", "from": None, "to": n[1]},
        {"slot": 2, "action": "place", "app": db, "name": "db", "from": None, "to": n[2]},
        {
            "slot": 5,
            "action": "migrate",
            "app": web,
            "name": "web",
            "from": n[1],
            "to": n[4],
            "outcome": "completed",
            "save_ms": 13.5,
            "transmit_ms": 40.0,
            "resume_ms": 7.25,
            "live": False,
            "attempts": 2,
            "bytes": 3000,
        },
    ]


def test_limits_keep_the_newest(world: World) -> None:
    snap = compute_snapshot(world, max_blocks=2, max_migrations=1)
    assert [b["slot"] for b in snap["blocks"]] == [5, 6]
    assert [(m["slot"], m["action"]) for m in snap["migrations"]] == [(5, "migrate")]
    # migrations older than the history looked at are not found
    assert compute_snapshot(world, max_blocks=1, history_blocks=1)["migrations"] == []
    assert world.get_recent_chain(100) == world.get_head_chain()
    assert world.get_recent_chain(2) == world.get_head_chain()[-2:]


def test_roles_of_a_slot_whose_block_is_in(world: World) -> None:
    """Once the head is the current slot's block, its roles are those it was elected
    under; a node that is down and one draining show so."""
    head = world.chain.get_head_state()
    world.now.now = get_slot_start_ms(world.params, head.slot) + 900
    slot, roles = world.get_slot_roles()
    block = world.chain.blocks[head.block_hash]
    assert isinstance(block, Block)
    assert slot == head.slot and roles == world.roles_on(world.chain.states[block.parent], slot)
    producer_key = next(m.public_key for m in head.validators.members if m.node == block.producer)
    assert roles is not None and roles.get_role(producer_key) is Role.PRODUCER
    snap = compute_snapshot(world)
    producer = [v["id"] for v in snap["nodes"] if v["role"] == "producer"]
    assert producer == [short(block.producer)]
    assert snap["node"]["slot"] == snap["node"]["head_slot"]

    quiet = head.validators.members[0].node
    draining = head.validators.members[1].node
    last_seen = {**head.last_seen, quiet: Slot(head.slot - world.params.down_after_slots)}
    authority = dataclasses.replace(head.authority, draining=(draining,))
    world.chain.states[head.block_hash] = dataclasses.replace(
        head, last_seen=last_seen, authority=authority
    )
    status = {v["id"]: v["status"] for v in compute_snapshot(world)["nodes"]}
    assert status[short(quiet)] == "down" and status[short(draining)] == "draining"
    assert list(status.values()).count("active") == len(status) - 2


def test_before_genesis() -> None:
    world = World(3, 2)
    world.engine = None
    snap = compute_snapshot(world)
    assert snap["node"]["slot"] == 0 and snap["node"]["head"] is None
    assert snap["node"]["role"] == "none" and snap["node"]["chain_id"] is None
    assert snap["blocks"] == snap["nodes"] == snap["apps"] == snap["migrations"] == []


def test_cost_at_100_nodes_and_1000_blocks() -> None:
    """Sent twice a second to every open dashboard: it must stay cheap. 100 validators,
    300 placed apps, 1000 blocks each with 25 reports of 3 apps, a migration every
    4th block."""
    nodes, apps = 100, 300
    spec = AppSpec(name="app", runtime=RuntimeKind.PROCESS, command=("/bin/true",))
    ids = [AppId(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(apps)]
    where: list[NodeId] = [make_identity(1 + i % nodes).node for i in range(apps)]
    records = tuple(
        sorted(
            (
                AppRecord(app, dataclasses.replace(spec, name=f"app-{i}"), where[i], Slot(0))
                for i, app in enumerate(ids)
            ),
            key=lambda r: r.app,
        )
    )
    world = World(nodes, 16, registry=Registry(records=records), down_after_slots=10_000)
    by_node = {i.node: k for k, i in enumerate(world.idents)}
    for b in range(1000):
        reporting = range((b % 4) * 25, (b % 4) * 25 + 25)
        reports = [
            world.report(k, 4000, [(ids[a], 300) for a in range(k, apps, nodes)]) for k in reporting
        ]
        plan = []
        if b % 4 == 0:
            a = b % apps
            target = world.idents[(by_node[where[a]] + 1) % nodes].node
            plan = [PlanEntry(PlanAction.MIGRATE, ids[a], where[a], target)]
            where[a] = target
        world.add(reports=reports, plan=plan, skip=b % 50 == 49)
    assert len(world.get_head_chain()) == 1000

    snap = compute_snapshot(world)
    assert len(snap["blocks"]) == 60 and len(snap["migrations"]) == 50
    assert len(snap["nodes"]) == len(world.chain.get_head_state().validators)
    assert len(snap["apps"]) == apps
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        compute_snapshot(world)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    size = len(json.dumps(snap, separators=(",", ":")))
    print(f"snapshot: median {timings[10]:.2f} ms, best {timings[0]:.2f} ms, {size} bytes")
    # Well under 20 ms on a laptop (2-3 ms); generous for a loaded CI runner.
    limit = float(os.environ.get("EDGECHAIN_SNAPSHOT_MS", "20"))
    assert timings[0] < limit, timings
