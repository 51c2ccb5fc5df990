"""Generate (or check) the committed test vectors in this directory.

    python tests/vectors/generate.py           # rewrite shuffle.json, roles.json, blocks.json
    python tests/vectors/generate.py --check   # exit 1 if they differ from a regeneration

The formats are documented in README.md next to this script. Everything here is
deterministic: seeds and keys are derived from fixed labels with SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from edgechain.chain.assembly import (
    make_address_record,
    make_command,
    make_exit_request,
    make_inclusion_request,
    make_report,
)
from edgechain.chain.command_encoding import (
    compute_command_hash,
    compute_command_signing_root,
    compute_submitted_app_id,
    encode_command,
)
from edgechain.chain.encoding import (
    FORMAT_VERSION,
    compute_block_hash,
    compute_genesis_hash,
    compute_vote_message,
    encode_block,
    encode_genesis,
)
from edgechain.chain.enrollment import make_enrollment_token
from edgechain.chain.model import (
    UNMEASURED_STATE_ROOM,
    AppPolicy,
    AppSpec,
    AppUsage,
    Block,
    Checkpoint,
    CommandKind,
    Coordinate,
    FinalityVote,
    PlanAction,
    PlanEntry,
    RuntimeKind,
)
from edgechain.consensus.roles import compute_roles
from edgechain.consensus.state import apply_block, compute_genesis_state
from edgechain.consensus.state_codec import compute_state_root, encode_state
from edgechain.crypto import bls
from edgechain.crypto.hashing import sha256
from edgechain.crypto.seed import (
    compute_block_seed,
    compute_genesis_seed,
    compute_roles_seed,
    compute_skip_seed,
)
from edgechain.crypto.shuffle import (
    SHUFFLE_ROUND_COUNT,
    compute_shuffled_index,
    compute_shuffled_list,
)
from edgechain.orchestrator.liveness import Stall
from edgechain.testing import (
    ADMIN,
    build_block,
    build_skip_block,
    make_genesis,
    make_identity,
    make_joining_request,
)
from edgechain.types import BlockHash, PublicKey, Slot

HERE = Path(__file__).resolve().parent
MAX_FILE_BYTES = 200_000

SHUFFLE_COUNTS = [0, 1, 2, 3, 5, 10, 33, 100, 255, 256, 257, 1000]
SHUFFLE_SEEDS_PER_COUNT = 2
LARGE_COUNTS = [10_000, 1_000_003, (1 << 32) + 7, 1 << 40]

ROLE_KEYS = 64
ROLE_SHAPES = [  # (validator count, committee size)
    (1, 0),
    (1, 4),
    (2, 1),
    (3, 4),
    (4, 3),
    (10, 0),
    (10, 4),
    (11, 10),
    (33, 8),
    (64, 16),
    (64, 63),
]
SLOTS = [0, 1, 2, 255, 1 << 32, (1 << 64) - 1]


def label_hash(label: bytes, index: int) -> bytes:
    return sha256(label, index.to_bytes(4, "big"))


def vector_public_key(index: int) -> PublicKey:
    """Key ``i``: ``sk_to_pk(keygen(SHA-256(b"vector" || i as 4-byte big-endian)))``."""
    return bls.sk_to_pk(bls.keygen(label_hash(b"vector", index)))


def shuffle_vectors() -> dict[str, object]:
    cases: list[dict[str, object]] = []
    for count in SHUFFLE_COUNTS:
        for k in range(SHUFFLE_SEEDS_PER_COUNT):
            seed = label_hash(b"shuffle vector seed", 100 * count + k)
            cases.append(
                {"seed": seed.hex(), "count": count, "mapping": compute_shuffled_list(count, seed)}
            )
    index_cases: list[dict[str, object]] = []
    for k, count in enumerate(LARGE_COUNTS):
        seed = label_hash(b"shuffle index vector seed", k)
        for index in sorted({0, 1, 255, 256, count // 2, count - 2, count - 1}):
            shuffled = compute_shuffled_index(index, count, seed)
            index_cases.append(
                {"seed": seed.hex(), "count": count, "index": index, "shuffled": shuffled}
            )
    return {
        "format": "edgechain-shuffle-vectors/1",
        "shuffle_round_count": SHUFFLE_ROUND_COUNT,
        "cases": cases,
        "index_cases": index_cases,
    }


def _scrambled(indices: list[int], salt: int) -> list[int]:
    # A fixed, seed-free reordering (the election must not depend on input order).
    return sorted(indices, key=lambda i: sha256(b"scramble", bytes([salt]), i.to_bytes(4, "big")))


def roles_vectors() -> dict[str, object]:
    keys = [vector_public_key(i) for i in range(ROLE_KEYS)]
    position = {pk: i for i, pk in enumerate(keys)}
    cases: list[dict[str, object]] = []
    for shape, (count, committee_size) in enumerate(ROLE_SHAPES):
        parent_seed = label_hash(b"roles vector parent", shape)
        for slot in (SLOTS[shape % len(SLOTS)], SLOTS[(shape + 1) % len(SLOTS)]):
            members = _scrambled(list(range(count)), shape)
            roles = compute_roles(
                [keys[i] for i in members], parent_seed, Slot(slot), committee_size
            )
            cases.append(
                {
                    "validator_set": members,
                    "parent_seed": parent_seed.hex(),
                    "slot": slot,
                    "committee_size": committee_size,
                    "roles_seed": compute_roles_seed(parent_seed, slot).hex(),
                    "producer": position[roles.producer],
                    "committee": [position[pk] for pk in roles.committee],
                    "validators": [position[pk] for pk in roles.validators],
                }
            )
    return {
        "format": "edgechain-roles-vectors/1",
        "public_keys": [pk.hex() for pk in keys],
        "cases": cases,
        "seeds": seed_vectors(),
    }


def seed_vectors() -> list[dict[str, object]]:
    vectors: list[dict[str, object]] = []
    for k in range(2):
        vdf_output = (label_hash(b"vdf output", k) * 4)[:100]
        vectors.append(
            {
                "kind": "block",
                "vdf_output": vdf_output.hex(),
                "seed": compute_block_seed(vdf_output).hex(),
            }
        )
        genesis_hash = label_hash(b"genesis hash", k)
        vectors.append(
            {
                "kind": "genesis",
                "genesis_hash": genesis_hash.hex(),
                "seed": compute_genesis_seed(genesis_hash).hex(),
            }
        )
    parent_seed = label_hash(b"seed vector parent", 0)
    for slot in SLOTS:
        vectors.append(
            {
                "kind": "skip",
                "parent_seed": parent_seed.hex(),
                "slot": slot,
                "seed": compute_skip_seed(parent_seed, slot).hex(),
            }
        )
        vectors.append(
            {
                "kind": "roles",
                "parent_seed": parent_seed.hex(),
                "slot": slot,
                "seed": compute_roles_seed(parent_seed, slot).hex(),
            }
        )
    return vectors


def block_vectors() -> dict[str, object]:
    """Canonical encodings and hashes of genesis, a block, a skip block and an app spec.

    Built with ``edgechain.testing`` (keys from fixed labels, a real VDF at 100
    iterations, deterministic BLS signatures), so the bytes are reproducible.
    """
    genesis, idents = make_genesis(5, committee_size=3, difficulty=100)
    genesis_hash = compute_genesis_hash(genesis)
    spec = AppSpec(
        "counter",
        RuntimeKind.PROCESS,
        command=("sh", "-c", "echo hi"),
        cpu_bp=250,
        ram_bp=100,
        stateful=True,
        policy=AppPolicy(
            allowed_labels=("eu",), anti_affinity="db", min_interval_slots=3, wait_for_state=True
        ),
        replica_interval_slots=5,
    )
    # Format 5: a container spec with every resource limit and the root opt-in set.
    limited = AppSpec(
        "cache",
        RuntimeKind.CONTAINER,
        image="localhost/edgechain-apps:latest",
        stateful=True,
        cpu_limit_millicores=500,
        memory_limit_bytes=64 * 1024 * 1024,
        state_limit_bytes=2**30,
        run_as_root=True,
    )
    operator = make_identity(60)
    chain_id = genesis.params.chain_id
    submit = make_command(operator.sk, chain_id, 7, CommandKind.SUBMIT, spec=spec)
    submit_limited = make_command(operator.sk, chain_id, 11, CommandKind.SUBMIT, spec=limited)
    app = compute_submitted_app_id(operator.pk, 7)
    move = make_command(operator.sk, chain_id, 8, CommandKind.MOVE, app=app, node=idents[2].node)
    grant = make_command(
        make_identity(61).sk, chain_id, 1, CommandKind.GRANT_OPERATOR, key=operator.pk
    )
    drain = make_command(
        make_identity(61).sk, chain_id, 2, CommandKind.DRAIN_NODE, node=idents[3].node
    )
    revoke_token = make_command(
        make_identity(61).sk, chain_id, 3, CommandKind.REVOKE_ENROLLMENT, key=bytes(range(32))
    )
    # A second newcomer presents an enrollment token instead of a key ticket (format 10).
    enrolled = make_identity(51)
    token = make_enrollment_token(ADMIN.sk, chain_id, bytes([7]) * 32, 1_000)
    enrolled_request = make_inclusion_request(
        enrolled.sk, "127.0.0.1:20051", ("lab",), token.encode()
    )
    recovered = compute_submitted_app_id(operator.pk, 9)
    replicated = compute_submitted_app_id(operator.pk, 10)
    usage = AppUsage(app, 1_200, 300, 50, 4_096, 1_700_000_002_000, state_bytes=15_200_000)
    reports = tuple(
        make_report(
            ident.sk, Slot(1), timestamp_ms=1_700_000_002_000 + i, cpu_bp=100 * i,
            ram_bp=200, disk_bp=300, rtt_us=1_000 + i, apps=(usage,) if i == 0 else (),
            pressure_bp=2_500 * i,
            # The first report votes from genesis to epoch 1's checkpoint; the second
            # carries no vote (format 7).
            vote=FinalityVote(
                Checkpoint(0, genesis_hash), Checkpoint(1, BlockHash(bytes(range(32))))
            ) if i == 0 else None,
            # Format 11: the first report's coordinate is negative on one axis.
            coordinate=Coordinate(-12_345, 67_890) if i == 0 else Coordinate(0, 0),
            # Format 17: the first report's node has 3 GiB of room for app state, the
            # second does not measure it.
            state_room_bytes=3 << 30 if i == 0 else UNMEASURED_STATE_ROOM,
        )
        for i, ident in enumerate(idents[:2])
    )  # fmt: skip
    newcomer = make_identity(50)
    genesis_state = compute_genesis_state(genesis)
    block = build_block(
        parent=genesis_hash,
        state_root=compute_state_root(genesis_state),
        slot=Slot(1),
        params=genesis.params,
        vdf_iterations=100,
        producer=idents[0],
        committee=idents[1:4],
        signer_indices=[0, 2],
        reports=reports,
        plan=(
            PlanEntry(PlanAction.RECOVER, recovered, idents[4].node, idents[2].node),
            PlanEntry(PlanAction.MIGRATE, app, idents[0].node, idents[1].node),
            PlanEntry(PlanAction.REPLICA, replicated, idents[1].node, idents[3].node),
        ),
        inclusions=tuple(
            sorted(
                (make_joining_request(newcomer, genesis.params, 50), enrolled_request),
                key=lambda r: r.public_key,
            )
        ),
        exits=(make_exit_request(idents[4].sk, Slot(1)),),
        commands=(submit, move, grant, drain, revoke_token, submit_limited),
        addresses=(
            make_address_record(idents[2].sk, genesis.params.chain_id, "10.0.0.7:7000", Slot(1)),
        ),
    )
    skip = build_skip_block(
        parent=compute_block_hash(block),
        slot=Slot(2),
        excluded=idents[2].node,
        committee=idents[1:4],
        signer_indices=[0, 1],
    )
    departed_state = apply_block(genesis_state, skip, compute_block_hash(skip), genesis.params)
    late_skip = build_skip_block(
        parent=genesis_hash,
        slot=Slot(6),
        excluded=idents[2].node,
        committee=idents[1:4],
        signer_indices=[0, 1],
    )
    stalled_state = apply_block(
        genesis_state, late_skip, compute_block_hash(late_skip), genesis.params
    )
    assert stalled_state.stall == Stall(Slot(0), Slot(6))
    return {
        "format": f"edgechain-block-vectors/{FORMAT_VERSION}",
        "genesis": [{"encoding": encode_genesis(genesis).hex(), "hash": genesis_hash.hex()}],
        # The state after the genesis in its canonical encoding (consensus/state_codec.py)
        # and its root, which the block below carries (format 8).
        "genesis_state": {
            "encoding": encode_state(genesis_state).hex(),
            "root": compute_state_root(genesis_state).hex(),
        },
        # The transition of the skip block below applied to the genesis state (its
        # parent is the slot-1 block, which excludes nobody): one departure, the node the
        # skip block excludes, at slot 2 (state format 6, block format 15).
        "departed_state": {
            "encoding": encode_state(departed_state).hex(),
            "root": compute_state_root(departed_state).hex(),
        },
        # The same skip block at slot 6 applied to the genesis state: slots 1-5 got no
        # block, a stall from slot 0 to 6 (state format 7, block format 16).
        "stalled_state": {
            "encoding": encode_state(stalled_state).hex(),
            "root": compute_state_root(stalled_state).hex(),
        },
        "blocks": [
            {
                "kind": "block" if isinstance(b, Block) else "skip",
                "encoding": encode_block(b).hex(),
                "hash": compute_block_hash(b).hex(),
                "vote_message": compute_vote_message(compute_block_hash(b)).hex(),
            }
            for b in (block, skip)
        ],
        "commands": [
            {
                "chain_id": chain_id,
                "encoding": encode_command(c).hex(),
                "signing_root": compute_command_signing_root(chain_id, c).hex(),
                "command_hash": compute_command_hash(c).hex(),
                "app_id": (
                    compute_submitted_app_id(c.signer, c.seq).hex()
                    if c.kind is CommandKind.SUBMIT
                    else None
                ),
            }
            for c in (submit, move, grant, drain, submit_limited)
        ],
    }


def render(document: dict[str, object]) -> str:
    """JSON with one line per list element at the top level: small, diff-friendly."""
    lines = ["{"]
    items = list(document.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f"  {json.dumps(key)}: [")
            for m, element in enumerate(value):
                inner = "," if m < len(value) - 1 else ""
                lines.append(f"    {json.dumps(element, separators=(', ', ': '))}{inner}")
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], dict[str, object]]] = {
    "shuffle.json": shuffle_vectors,
    "roles.json": roles_vectors,
    "blocks.json": block_vectors,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    status = 0
    for name, generate in GENERATORS.items():
        text = render(generate())
        if len(text.encode()) > MAX_FILE_BYTES:
            print(f"{name}: {len(text.encode())} bytes exceeds {MAX_FILE_BYTES}", file=sys.stderr)
            status = 1
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{name}: differs from a regeneration", file=sys.stderr)
                status = 1
        else:
            path.write_text(text)
            print(f"wrote {path} ({len(text.encode())} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
