"""The wire format: protobuf schema, envelope, size limits, frames, decode errors.

* ``edgechain.proto`` / ``edgechain_pb2`` — the schema and its generated code
  (``scripts/gen-proto.sh``; committed, checked by ``tests/wire/test_generated.py``);
* :mod:`edgechain.wire.messages` — the network's own messages (DHT, gossip) as frozen
  dataclasses, importable without protobuf;
* :mod:`edgechain.wire.limits` — every size limit, checked before parsing;
* :mod:`edgechain.wire.message_kinds` — every message type an envelope carries and the
  rules fixed per type (envelope-signed, gossiped, datagram), ``Transport``;
* :mod:`edgechain.wire.payload_encoding` / :mod:`edgechain.wire.payload_decoding` —
  messages to and from the protobuf ``Payload``, every field checked on the way in;
* :mod:`edgechain.wire.codec` — ``encode_message`` / ``decode_message``: the envelope,
  its signature or MAC, the size checks;
* :mod:`edgechain.wire.framing` — u32-length-prefixed TCP frames, sans-I/O.

This package imports nothing at import time, so the pure network objects can use
:mod:`edgechain.wire.messages` without loading protobuf.
"""
