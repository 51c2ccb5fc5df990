"""The committed vectors are current, small, and agree with the per-index code paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgechain.consensus.roles import compute_roles
from edgechain.crypto.seed import (
    compute_block_seed,
    compute_genesis_seed,
    compute_roles_seed,
    compute_skip_seed,
)
from edgechain.crypto.shuffle import compute_shuffled_index
from edgechain.types import PublicKey, Slot

HERE = Path(__file__).resolve().parent


def load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


def test_vectors_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_vectors_are_small() -> None:
    for name in ("shuffle.json", "roles.json", "blocks.json"):
        assert (HERE / name).stat().st_size < 200_000


def test_shuffle_vectors_per_index() -> None:
    vectors = load("shuffle.json")
    assert vectors["shuffle_round_count"] == 90
    for case in vectors["cases"]:
        seed, count = bytes.fromhex(case["seed"]), case["count"]
        assert case["mapping"] == [compute_shuffled_index(i, count, seed) for i in range(count)]
    for case in vectors["index_cases"]:
        seed = bytes.fromhex(case["seed"])
        assert compute_shuffled_index(case["index"], case["count"], seed) == case["shuffled"]


def test_roles_vectors() -> None:
    vectors = load("roles.json")
    keys = [PublicKey(bytes.fromhex(pk)) for pk in vectors["public_keys"]]
    for case in vectors["cases"]:
        parent_seed = bytes.fromhex(case["parent_seed"])
        slot = Slot(case["slot"])
        assert compute_roles_seed(parent_seed, slot).hex() == case["roles_seed"]
        members = [keys[k] for k in case["validator_set"]]
        roles = compute_roles(members, parent_seed, slot, case["committee_size"])
        assert roles.producer == keys[case["producer"]]
        assert list(roles.committee) == [keys[k] for k in case["committee"]]
        assert list(roles.validators) == [keys[k] for k in case["validators"]]
        # Step by step, as README.md describes it.
        ordered = sorted(members)
        seed = bytes.fromhex(case["roles_seed"])
        shuffled = [
            ordered[compute_shuffled_index(i, len(ordered), seed)] for i in range(len(ordered))
        ]
        assert shuffled[0] == keys[case["producer"]]


def test_seed_vectors() -> None:
    for vector in load("roles.json")["seeds"]:
        kind = vector["kind"]
        if kind == "block":
            seed = compute_block_seed(bytes.fromhex(vector["vdf_output"]))
        elif kind == "genesis":
            seed = compute_genesis_seed(bytes.fromhex(vector["genesis_hash"]))
        elif kind == "skip":
            seed = compute_skip_seed(bytes.fromhex(vector["parent_seed"]), Slot(vector["slot"]))
        else:
            assert kind == "roles"
            seed = compute_roles_seed(bytes.fromhex(vector["parent_seed"]), Slot(vector["slot"]))
        assert seed.hex() == vector["seed"], vector


def test_block_vectors_decode_and_hash() -> None:
    """Each encoding decodes, re-encodes to the same bytes, and hashes as recorded."""
    from edgechain.chain.command_encoding import (
        compute_command_hash,
        compute_command_signing_root,
        compute_submitted_app_id,
        decode_command,
        encode_command,
    )
    from edgechain.chain.encoding import (
        compute_genesis_hash,
        decode_block_with_hash,
        decode_genesis,
        encode_block,
        encode_genesis,
    )
    from edgechain.chain.validation import validate_command_signature, validate_genesis

    vectors = load("blocks.json")
    for case in vectors["genesis"]:
        genesis = decode_genesis(bytes.fromhex(case["encoding"]))
        validate_genesis(genesis)
        assert encode_genesis(genesis).hex() == case["encoding"]
        assert compute_genesis_hash(genesis).hex() == case["hash"]
    for case in vectors["blocks"]:
        block, block_hash = decode_block_with_hash(bytes.fromhex(case["encoding"]))
        assert encode_block(block).hex() == case["encoding"]
        assert block_hash.hex() == case["hash"]
    for case in vectors["commands"]:
        command = decode_command(bytes.fromhex(case["encoding"]))
        assert encode_command(command).hex() == case["encoding"]
        validate_command_signature(command, case["chain_id"])
        root = compute_command_signing_root(case["chain_id"], command)
        assert root.hex() == case["signing_root"]
        assert compute_command_hash(command).hex() == case["command_hash"]
        if case["app_id"] is not None:
            app_id = compute_submitted_app_id(command.signer, command.seq)
            assert app_id.hex() == case["app_id"]


def test_state_vector_is_the_genesis_state_and_its_root_is_carried() -> None:
    """The recorded state encoding is the genesis's state (recomputed here), decodes and
    re-encodes to itself, hashes to the recorded root, and the slot-1 block carries it."""
    from edgechain.chain.encoding import decode_block, decode_genesis
    from edgechain.chain.model import Block
    from edgechain.consensus.state import compute_genesis_state
    from edgechain.consensus.state_codec import compute_state_root, decode_state, encode_state

    vectors = load("blocks.json")
    case = vectors["genesis_state"]
    state = decode_state(bytes.fromhex(case["encoding"]))
    assert encode_state(state).hex() == case["encoding"]
    assert compute_state_root(state).hex() == case["root"]
    genesis = decode_genesis(bytes.fromhex(vectors["genesis"][0]["encoding"]))
    assert state == compute_genesis_state(genesis)
    block = decode_block(bytes.fromhex(vectors["blocks"][0]["encoding"]))
    assert isinstance(block, Block) and block.state_root.hex() == case["root"]


def test_departed_state_vector_records_the_skip_blocks_exclusion() -> None:
    """The second state vector is the skip block's transition on the genesis state: it
    decodes and re-encodes to itself, hashes to its root, and keeps the excluded node in
    ``departures`` at the skip block's slot (state format 6)."""
    from edgechain.chain.encoding import compute_block_hash, decode_block, decode_genesis
    from edgechain.chain.model import SkipBlock
    from edgechain.consensus.state import apply_block, compute_genesis_state
    from edgechain.consensus.state_codec import compute_state_root, decode_state, encode_state

    vectors = load("blocks.json")
    case = vectors["departed_state"]
    state = decode_state(bytes.fromhex(case["encoding"]))
    assert encode_state(state).hex() == case["encoding"]
    assert compute_state_root(state).hex() == case["root"]
    genesis = decode_genesis(bytes.fromhex(vectors["genesis"][0]["encoding"]))
    skip = decode_block(bytes.fromhex(vectors["blocks"][1]["encoding"]))
    assert isinstance(skip, SkipBlock)
    expected = apply_block(
        compute_genesis_state(genesis), skip, compute_block_hash(skip), genesis.params
    )
    assert state == expected
    assert dict(state.departures) == {skip.excluded: skip.slot}
    assert skip.excluded not in state.validators


def test_stalled_state_vector_keeps_the_stall() -> None:
    """The third state vector is a skip block of slot 6 on the genesis: slots 1-5 got no
    block, so the state keeps the stall from 0 to 6 (state format 7), and its encoding
    round-trips and hashes to its root."""
    from edgechain.consensus.state_codec import compute_state_root, decode_state, encode_state
    from edgechain.orchestrator.liveness import Stall
    from edgechain.types import Slot

    case = load("blocks.json")["stalled_state"]
    state = decode_state(bytes.fromhex(case["encoding"]))
    assert encode_state(state).hex() == case["encoding"]
    assert compute_state_root(state).hex() == case["root"]
    assert state.slot == 6 and state.stall == Stall(Slot(0), Slot(6))
