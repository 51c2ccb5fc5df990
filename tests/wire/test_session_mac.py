"""DHT envelopes MACed under the pair's session key (crypto/session.py) instead of signed."""

from __future__ import annotations

import pytest

from edgechain.crypto import bls
from edgechain.crypto.session import SessionKeys, compute_session_key
from edgechain.errors import DecodeError, PeerError
from edgechain.testing import make_identity
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.codec import decode_message, encode_message

from .samples import SAMPLES, SENDER

RECEIVER = make_identity(97, b"edgechain-wire-test")
THIRD = make_identity(96, b"edgechain-wire-test")


def _sessions(ident: object) -> SessionKeys:
    return SessionKeys(ident.sk, ident.pk)  # type: ignore[attr-defined]


def _maced(name: str = "find_node", to: object = RECEIVER) -> bytes:
    sender = _sessions(SENDER)
    return encode_message(
        SAMPLES[name],
        SENDER.node,
        SENDER.sk,
        sessions=sender,
        recipient_pk=to.pk,  # type: ignore[attr-defined]
    )


def _envelope(data: bytes) -> pb.Envelope:
    env = pb.Envelope()
    env.ParseFromString(data)
    return env


def test_both_ends_derive_the_same_key_and_no_one_else() -> None:
    ab = compute_session_key(SENDER.sk, SENDER.node, RECEIVER.pk)
    ba = compute_session_key(RECEIVER.sk, RECEIVER.node, SENDER.pk)
    assert ab == ba
    assert compute_session_key(THIRD.sk, THIRD.node, SENDER.pk) != ab


@pytest.mark.parametrize("name", ["ping", "pong", "find_node", "nodes"])
def test_a_maced_dht_message_decodes_at_its_recipient(name: str) -> None:
    data = _maced(name)
    env = _envelope(data)
    assert len(env.mac) == 16 and not env.signature
    receiver = _sessions(RECEIVER)
    message, sender = decode_message(data, sessions=receiver)
    assert message == SAMPLES[name] and sender == SENDER.node
    # The sender proved its key: the receiver can MAC its answers from now on.
    assert receiver.get_peer_key(SENDER.node) == SENDER.pk


def test_a_maced_message_is_smaller_than_a_signed_one() -> None:
    signed = encode_message(SAMPLES["nodes"], SENDER.node, SENDER.sk)
    assert len(_maced("nodes")) < len(signed)


def test_another_recipient_refuses_it() -> None:
    with pytest.raises(PeerError, match="bad_envelope_mac"):
        decode_message(_maced(), sessions=_sessions(THIRD))


def test_the_mac_covers_the_payload_and_the_sender() -> None:
    pong = _envelope(_maced("pong"))
    env = _envelope(_maced("ping"))
    env.payload = pong.payload
    with pytest.raises(PeerError, match="bad_envelope_mac"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))
    # Another sender's key with this MAC: its own session key with us differs.
    env = _envelope(_maced("ping"))
    env.public_key = THIRD.pk
    env.sender = THIRD.node
    with pytest.raises(PeerError, match="bad_envelope_mac"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))


def test_a_mac_without_sessions_or_beside_a_signature_is_malformed() -> None:
    with pytest.raises(DecodeError, match="unexpected_mac"):
        decode_message(_maced())
    env = _envelope(_maced())
    env.signature = _envelope(
        encode_message(SAMPLES["find_node"], SENDER.node, SENDER.sk)
    ).signature
    with pytest.raises(DecodeError, match="unexpected_signature"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))
    env = _envelope(_maced())
    env.mac = env.mac[:8]
    with pytest.raises(DecodeError, match="bad_length"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))


def test_a_mac_on_a_type_the_envelope_does_not_authenticate_is_malformed() -> None:
    env = _envelope(encode_message(SAMPLES["vote"], SENDER.node))
    env.mac = _envelope(_maced()).mac
    with pytest.raises(DecodeError, match="unexpected_signature"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))


def test_an_invalid_peer_key_is_a_peer_error() -> None:
    env = _envelope(_maced())
    bad = bytes([0xC0]) + bytes(46) + b"\x01"  # infinity flag with stray bits
    env.public_key = bad
    env.sender = bytes(32)
    with pytest.raises(DecodeError, match="key_mismatch"):
        decode_message(env.SerializeToString(), sessions=_sessions(RECEIVER))
    with pytest.raises(bls.BlsError):
        _sessions(RECEIVER).get_key(bad)  # type: ignore[arg-type]


def test_signed_messages_still_decode_with_sessions_and_teach_the_key() -> None:
    receiver = _sessions(RECEIVER)
    data = encode_message(SAMPLES["ping"], SENDER.node, SENDER.sk)
    assert decode_message(data, sessions=receiver)[1] == SENDER.node
    assert receiver.get_peer_key(SENDER.node) == SENDER.pk


def test_keys_are_derived_once_per_peer() -> None:
    receiver = _sessions(RECEIVER)
    for _ in range(5):
        decode_message(_maced(), sessions=receiver)
    assert receiver.derivations == 1
