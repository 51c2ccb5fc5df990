"""Hostile bytes at the wire: every failure is a PeerError (DecodeError), nothing else.

Four kinds of input: random bytes; truncations and bit flips of a valid encoding of every
message type; and *valid protobuf* carrying garbage where it matters (every field of
every payload kind filled with arbitrary values, inner canonical encodings included),
inside envelopes that are otherwise well formed. ``decode_message`` may accept an input
(a bit flip in a nonce is still a valid ping) but may only ever raise ``PeerError``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgechain.errors import PeerError
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.codec import decode_gossip_payload, decode_message, encode_message
from edgechain.wire.limits import WIRE_VERSION
from edgechain.wire.message_kinds import Transport, is_envelope_signed
from edgechain.wire.messages import GossipMsg

from .samples import SAMPLES, SENDER

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODED = {name: encode_message(m, SENDER.node, SENDER.sk) for name, m in SAMPLES.items()}
NAMES = sorted(ENCODED)
PAYLOAD_KINDS = [f.name for f in pb.Payload.DESCRIPTOR.oneofs_by_name["kind"].fields]
# Bytes fields often have a fixed size; draw those sizes often so that the checks behind
# the length checks (inner canonical decoders, signature verification) get exercised.
INTERESTING_SIZES = [0, 1, 31, 32, 33, 47, 48, 49, 95, 96, 97]


def _decode_cleanly(data: bytes, transport: Transport = Transport.STREAM) -> None:
    """Decode like a node would; only PeerError may escape, and is swallowed."""
    with contextlib.suppress(PeerError):
        message, _ = decode_message(data, transport)
        if isinstance(message, GossipMsg):
            decode_gossip_payload(message.payload)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(list(Transport)))
def test_random_bytes(data: bytes, transport: Transport) -> None:
    _decode_cleanly(data, transport)


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_truncations(name: str, data: st.DataObject) -> None:
    original = ENCODED[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    _decode_cleanly(original[:cut])


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_bit_flips(name: str, data: st.DataObject) -> None:
    original = ENCODED[name]
    position = data.draw(st.integers(min_value=0, max_value=len(original) * 8 - 1))
    mutated = bytearray(original)
    mutated[position // 8] ^= 1 << (position % 8)
    _decode_cleanly(bytes(mutated))


@pytest.mark.parametrize("name", [n for n in NAMES if is_envelope_signed(type(SAMPLES[n]))])
def test_every_bit_flip_of_a_signed_payload_is_refused(name: str) -> None:
    """The envelope signature covers every payload bit of a signed type."""
    env = pb.Envelope()
    env.ParseFromString(ENCODED[name])
    for position in range(0, len(env.payload) * 8, 7):
        payload = bytearray(env.payload)
        payload[position // 8] ^= 1 << (position % 8)
        forged = pb.Envelope()
        forged.CopyFrom(env)
        forged.payload = bytes(payload)
        with pytest.raises(PeerError):
            decode_message(forged.SerializeToString())


def _draw_value(data: st.DataObject, field: FieldDescriptor, depth: int) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        size = data.draw(st.sampled_from([*INTERESTING_SIZES, -1]))
        if size < 0:
            return data.draw(st.binary(max_size=600))
        return data.draw(st.binary(min_size=size, max_size=size))
    if field.type == FieldDescriptor.TYPE_STRING:
        return data.draw(st.text(max_size=80))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return data.draw(st.booleans())
    if field.type in (FieldDescriptor.TYPE_UINT32,):
        return data.draw(st.integers(min_value=0, max_value=2**32 - 1))
    if field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return data.draw(st.integers(min_value=0, max_value=2**64 - 1))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return _draw_message(data, field.message_type, depth + 1)
    raise AssertionError(f"unhandled field type {field.type}")  # pragma: no cover


def _draw_message(data: st.DataObject, descriptor: Descriptor, depth: int = 0) -> Any:
    """An instance of ``descriptor``'s message with arbitrary values in arbitrary fields."""
    message = getattr(pb, descriptor.name)()
    for field in descriptor.fields:
        if not data.draw(st.booleans()):
            continue
        if field.is_repeated:
            values = [_draw_value(data, field, depth) for _ in range(data.draw(st.integers(0, 4)))]
            target = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for value in values:
                    target.add().CopyFrom(value)
            else:
                target.extend(values)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(_draw_value(data, field, depth))
        else:
            setattr(message, field.name, _draw_value(data, field, depth))
    return message


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PAYLOAD_KINDS), st.data())
def test_valid_protobuf_with_garbage_inside(kind: str, data: st.DataObject) -> None:
    payload = pb.Payload()
    field = pb.Payload.DESCRIPTOR.fields_by_name[kind]
    assert field.message_type is not None
    getattr(payload, kind).CopyFrom(_draw_message(data, field.message_type))
    envelope = pb.Envelope(
        # Mostly well-formed envelopes, so that the payload checks behind them run.
        version=data.draw(st.sampled_from([WIRE_VERSION] * 6 + [0, 2])),
        sender=data.draw(st.sampled_from([SENDER.node] * 3 + [b"\x00" * 32, b"", b"\x01" * 31])),
        payload=payload.SerializeToString(),
    )
    if data.draw(st.booleans()):
        envelope.public_key = data.draw(st.sampled_from([SENDER.pk, b"\x00" * 48, b"\xc0" * 48]))
        envelope.signature = data.draw(st.binary(min_size=96, max_size=96))
    _decode_cleanly(envelope.SerializeToString())


@FUZZ
@given(st.sampled_from(NAMES), st.binary(max_size=64), st.data())
def test_spliced_inner_bytes(name: str, garbage: bytes, data: st.DataObject) -> None:
    """Garbage spliced into the canonical encoding inside a valid envelope."""
    env = pb.Envelope()
    env.ParseFromString(ENCODED[name])
    start = data.draw(st.integers(min_value=0, max_value=len(env.payload)))
    end = data.draw(st.integers(min_value=start, max_value=len(env.payload)))
    env.payload = env.payload[:start] + garbage + env.payload[end:]
    _decode_cleanly(env.SerializeToString())
