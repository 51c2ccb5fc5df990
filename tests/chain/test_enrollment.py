"""Enrollment tokens (block format 10): one admin-signed token admits any key until it
expires or is revoked; a block that includes a node with a bad one is refused."""

from __future__ import annotations

import dataclasses

import pytest
from chain_world import World, build_slot_1_block, get_slot_1_context, make_world

from edgechain.chain.assembly import make_command, make_inclusion_request
from edgechain.chain.authority import (
    apply_commands_to_authority,
    check_command_shape,
    is_enrollment_revoked,
)
from edgechain.chain.command_encoding import decode_command, encode_command
from edgechain.chain.encoding import compute_block_hash, decode_block, encode_block
from edgechain.chain.enrollment import (
    TOKEN_SIZE,
    decode_enrollment_token,
    is_enrollment_token,
    make_enrollment_token,
)
from edgechain.chain.model import CommandKind, InclusionRequest
from edgechain.chain.validation import check_admission, validate_block, validate_inclusion
from edgechain.consensus.producer import is_admissible
from edgechain.consensus.state import compute_genesis_state
from edgechain.consensus.state_codec import decode_state, encode_state
from edgechain.errors import RejectReason, ValidationError
from edgechain.testing import ADMIN, make_identity
from edgechain.types import Slot

TOKEN_ID = bytes([9]) * 32


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _joining(world: World, index: int, ticket: bytes) -> InclusionRequest:
    ident = make_identity(index)
    return make_inclusion_request(ident.sk, f"127.0.0.1:{21000 + index}", ("lab",), ticket)


def _reason(call: object) -> RejectReason:
    assert callable(call)
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.reason


def test_a_token_round_trips_and_is_told_from_a_key_ticket(world: World) -> None:
    genesis = world[0]
    token = make_enrollment_token(ADMIN.sk, genesis.params.chain_id, TOKEN_ID, 50)
    data = token.encode()
    assert len(data) == TOKEN_SIZE and is_enrollment_token(data)
    assert decode_enrollment_token(data) == token
    assert not is_enrollment_token(bytes(96))
    with pytest.raises(ValueError):
        decode_enrollment_token(data[:-1])
    with pytest.raises(ValueError):
        make_enrollment_token(ADMIN.sk, "x", b"short", 5)


def test_any_key_joins_with_one_token_while_it_is_valid(world: World) -> None:
    genesis = world[0]
    params = genesis.params
    token = make_enrollment_token(ADMIN.sk, params.chain_id, TOKEN_ID, 50).encode()
    requests = [_joining(world, 80 + i, token) for i in range(2)]
    auth = compute_genesis_state(genesis).authority
    for req in requests:  # two different keys, one token
        validate_inclusion(req, params)
        check_admission(req, params, auth, 50)
    block = build_slot_1_block(
        world, inclusions=tuple(sorted(requests, key=lambda r: r.public_key))
    )
    assert decode_block(encode_block(block)) == block
    validate_block(block, compute_block_hash(block), get_slot_1_context(world))


def test_a_forged_expired_or_revoked_token_admits_nobody(world: World) -> None:
    genesis = world[0]
    params = genesis.params
    state = compute_genesis_state(genesis)
    stranger = make_identity(90)
    forged = make_enrollment_token(stranger.sk, params.chain_id, TOKEN_ID, 50).encode()
    other_chain = make_enrollment_token(ADMIN.sk, "another", TOKEN_ID, 50).encode()
    for ticket in (forged, other_chain):
        req = _joining(world, 81, ticket)
        assert _reason(lambda r=req: validate_inclusion(r, params)) is (
            RejectReason.BAD_ADMISSION_TICKET
        )
    good = _joining(
        world, 82, make_enrollment_token(ADMIN.sk, params.chain_id, TOKEN_ID, 50).encode()
    )
    # Expired: the block's slot is past the token's last.
    assert _reason(lambda: check_admission(good, params, state.authority, 51)) is (
        RejectReason.BAD_ADMISSION_TICKET
    )
    assert is_admissible(good, params, state, Slot(50))
    assert not is_admissible(good, params, state, Slot(51))
    # Revoked by the admin: from the next block on.
    revoke = make_command(ADMIN.sk, params.chain_id, 1, CommandKind.REVOKE_ENROLLMENT, key=TOKEN_ID)
    check_command_shape(revoke)
    assert decode_command(encode_command(revoke)) == revoke
    auth = apply_commands_to_authority(state.authority, (revoke,))
    assert is_enrollment_revoked(auth, TOKEN_ID)
    assert _reason(lambda: check_admission(good, params, auth, 10)) is (
        RejectReason.BAD_ADMISSION_TICKET
    )
    revoked_state = dataclasses.replace(state, authority=auth)
    assert not is_admissible(good, params, revoked_state, Slot(10))
    assert decode_state(encode_state(revoked_state)).authority == auth
    # A token id is 32 bytes; a public key in its place is malformed.
    bad = dataclasses.replace(revoke, key=bytes(48))
    assert _reason(lambda: check_command_shape(bad)) is RejectReason.COMMAND_MALFORMED
