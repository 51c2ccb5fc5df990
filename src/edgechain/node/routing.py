"""Where a peer is reached and how what we send it is encoded (the node's sending side).

:class:`PeerRouting` holds the node's knowledge of its peers: the address each one is
reached at (the address it registered on chain, else the DHT, else the source of its
last datagram, else its pending inclusion request) and the public keys that let DHT
envelopes to it carry a session MAC instead of a signature (``crypto/session.py``). It
encodes and sends; the node's loop decides what to send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import (
    ForwardSyncResponseMsg,
    Outgoing,
    Route,
    SyncResponseMsg,
)
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.session import SessionKeys
from edgechain.network.dht import DhtNode
from edgechain.network.gossip import Gossip
from edgechain.network.transport import NetworkTransport
from edgechain.types import NodeId, PublicKey, SecretKey
from edgechain.wire.codec import (
    encode_gossip_payload,
    encode_message,
    fit_forward_response,
    fit_sync_response,
)
from edgechain.wire.message_kinds import Transport, is_envelope_signed, select_transport
from edgechain.wire.messages import Contact, DhtMessage, GossipMsg, IHave, IWant

RECENT_ANSWER_MS = 60_000
"""A DHT answer this recent names where a node is now, over the address on chain."""


@dataclass
class RoutingCounters:
    unresolved: int = 0
    """Messages dropped because no address was known for their peer."""


class PeerRouting:
    """Peer addresses and keys, and the encoding of everything the node sends."""

    def __init__(
        self,
        node_id: NodeId,
        sk: SecretKey,
        sessions: SessionKeys,
        transport: NetworkTransport,
        dht: DhtNode,
        gossip: Gossip,
        get_engine: Callable[[], ConsensusEngine | None],
        now_ms: Callable[[], int],
    ) -> None:
        self.node_id = node_id
        self._sk = sk
        self.sessions = sessions
        self.transport = transport
        self.dht = dht
        self.gossip = gossip
        self._get_engine = get_engine
        self._now_ms = now_ms
        self.addresses: dict[NodeId, str] = {}
        """Source addresses of UDP datagrams: where a sender can be answered."""
        self.configured: dict[NodeId, str] = {}
        """Addresses the operator gave (the bootstrap's): the last resort of
        :meth:`resolve`, since a routing table may evict a peer that answered slowly."""
        self.counters = RoutingCounters()

    def on_datagram_from(self, sender: NodeId, source: str) -> None:
        self.addresses[sender] = source

    def resolve(self, node: NodeId) -> str | None:
        """Where to reach ``node``: where it proved itself to our DHT in the last
        ``RECENT_ANSWER_MS`` (a node that moved answers there before a block carries
        its address record, ``consensus/addresses.py``), else the address on chain,
        else the DHT's older knowledge, the last datagram's source, its pending
        inclusion request, or the operator's seed address."""
        recent = self.dht.get_recent_address(node, self._now_ms(), RECENT_ANSWER_MS)
        if recent is not None:
            return recent
        engine = self._get_engine()
        state = engine.get_head_state() if engine is not None else None
        if state is not None:
            info = state.validators.get(node)
            if info is not None:
                return info.address
        address = self.dht.get_address(node) or self.addresses.get(node)
        if address is None and engine is not None:
            for request in engine.pending_inclusions.values():
                if compute_node_id(request.public_key) == node:
                    return request.address
        return address or self.configured.get(node)

    def get_peer_key(self, node: NodeId) -> PublicKey | None:
        """``node``'s public key if we know it: from a message it authenticated, the
        configured bootstrap key, or the validator set of our head."""
        key = self.sessions.get_peer_key(node)
        if key is not None:
            return key
        engine = self._get_engine()
        state = engine.get_head_state() if engine is not None else None
        info = state.validators.get(node) if state is not None else None
        return info.public_key if info is not None else None

    def get_gossip_peers(self) -> list[NodeId]:
        """Our DHT contacts and the validators of our head."""
        peers = [c.node_id for c in self.dht.get_peers()]
        engine = self._get_engine()
        state = engine.get_head_state() if engine is not None else None
        if state is not None:
            peers.extend(state.validators.get_node_ids())
        return peers

    def send_copies(self, copies: Iterable[tuple[NodeId, GossipMsg | IHave | IWant]]) -> None:
        """Send each peer its message, encoding each distinct message once: a push
        sends one gossip copy to ``fanout`` peers, a heartbeat one IHave to several."""
        encoded: dict[GossipMsg | IHave | IWant, tuple[bytes, Transport]] = {}
        for peer, message in copies:
            address = self.resolve(peer)
            if address is None:
                self.counters.unresolved += 1
                continue
            ready = encoded.get(message)
            if ready is None:
                data = encode_message(message, self.node_id)
                ready = encoded[message] = (data, select_transport(message, data))
            self.transport.send(address, *ready)

    def send_dht(self, contact: Contact, message: DhtMessage) -> None:
        """MACed to a peer whose key we know, signed otherwise."""
        data = encode_message(
            message,
            self.node_id,
            self._sk,
            sessions=self.sessions,
            recipient_pk=self.get_peer_key(contact.node_id),
        )
        self.transport.send(contact.address, data, Transport.DATAGRAM)

    def send_outgoing(self, outgoing: Outgoing, now: int) -> list[NodeId]:
        """Gossip it, or send it to its peers; returns the peers with no known address
        (the caller looks them up in the DHT)."""
        message = outgoing.message
        if outgoing.route is Route.GOSSIP:
            sk = self._sk if is_envelope_signed(type(message)) else None
            payload = encode_gossip_payload(message, self.node_id, sk)  # type: ignore[arg-type]
            self.send_copies(self.gossip.publish(payload, now))
            return []
        if isinstance(message, SyncResponseMsg):
            message = fit_sync_response(message)
        elif isinstance(message, ForwardSyncResponseMsg):
            message = fit_forward_response(message)
        data = encode_message(message, self.node_id)
        transport = select_transport(message, data)
        unresolved = []
        for peer in outgoing.to:
            address = self.resolve(peer)
            if address is None:
                self.counters.unresolved += 1
                unresolved.append(peer)
                continue
            self.transport.send(address, data, transport)
        return unresolved
