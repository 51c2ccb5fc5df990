"""This node's round-trip time to the other validators, for its reports (paper §3.2,
Table 2: each report carries the node's average RTT; ``ResourceReport.rtt_us``).

Every :data:`PROBE_INTERVAL_MS` the node pings one validator chosen at random (a DHT
``Ping`` with a request id of its own, answered by the peer's DHT with a ``Pong``) and
times the answer with the monotonic clock, in microseconds. The average is smoothed as
TCP smooths its RTT (RFC 6298: SRTT += (sample - SRTT) / 8), so one slow answer from a
loaded peer moves it an eighth of the way. A probe not answered within
:data:`PROBE_TIMEOUT_MS` is dropped, not counted (a lost datagram says nothing of the
delay), and at most :data:`MAX_OUTSTANDING` wait at once. The answers are ours alone:
the node hands a ``Pong`` to :meth:`RttProbe.on_pong` before the DHT, which knows none
of these request ids.

The RTT is measured, reported and shown (``/status``, ``/nodes``, ``/metrics``); no
consensus rule reads it: a node could report any figure, and nothing may hang on one.

Each answered probe is also a Vivaldi sample (``cluster/vivaldi.py``): the node moves its
network coordinate against the peer's coordinate as the head state has it, and reports
it; the chain moves its copy towards it by a bounded step, and the report overlay
clusters on those copies (``cluster/kmeans.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgechain.chain.model import Coordinate
from edgechain.cluster.vivaldi import VivaldiState, process_sample
from edgechain.types import NodeId

PROBE_INTERVAL_MS = 5_000
PROBE_TIMEOUT_MS = 5_000
MAX_OUTSTANDING = 8
SMOOTHING = 8
"""RFC 6298's 1/alpha: each sample moves the average an eighth of the way."""


@dataclass(frozen=True)
class Probe:
    peer: NodeId
    sent_ns: int
    """The monotonic clock when the ping left (``time.perf_counter_ns``)."""
    sent_ms: int
    """The node's clock, for the timeout."""


class RttProbe:
    """Chooses whom to ping, matches the answers, keeps the smoothed RTT."""

    def __init__(self, node_id: NodeId, rng: random.Random) -> None:
        self.node_id = node_id
        self.rng = rng
        self.outstanding: dict[int, Probe] = {}
        self.smoothed_us: int | None = None
        self.samples = 0
        self.next_probe_ms = 0
        self.vivaldi = VivaldiState()

    def is_due(self, now_ms: int) -> bool:
        """Time for a probe (the caller need not gather the peers before)."""
        return now_ms >= self.next_probe_ms

    def choose(
        self, now_ms: int, now_ns: int, peers: Sequence[NodeId]
    ) -> tuple[NodeId, int] | None:
        """The peer to ping now and the request id to ping it with, or None (not yet
        time, nobody else, or too many probes unanswered)."""
        if not self.is_due(now_ms):
            return None
        self.next_probe_ms = now_ms + PROBE_INTERVAL_MS
        for request_id, probe in list(self.outstanding.items()):
            if now_ms - probe.sent_ms >= PROBE_TIMEOUT_MS:
                del self.outstanding[request_id]
        others = [p for p in peers if p != self.node_id]
        if not others or len(self.outstanding) >= MAX_OUTSTANDING:
            return None
        peer = others[self.rng.randrange(len(others))]
        request_id = self.rng.getrandbits(64)
        self.outstanding[request_id] = Probe(peer, now_ns, now_ms)
        return peer, request_id

    def on_pong(
        self,
        sender: NodeId,
        request_id: int,
        now_ns: int,
        get_coordinate: Callable[[NodeId], Coordinate | None],
    ) -> bool:
        """True if the answer is to one of our probes (then it is ours, not the DHT's).
        ``get_coordinate``: a node's coordinate on our head (None: not a validator there,
        so no Vivaldi sample), asked only for an answer to our probe."""
        probe = self.outstanding.get(request_id)
        if probe is None or probe.peer != sender:
            return False
        del self.outstanding[request_id]
        sample_us = max(0, (now_ns - probe.sent_ns) // 1000)
        if self.smoothed_us is None:
            self.smoothed_us = sample_us
        else:
            self.smoothed_us += (sample_us - self.smoothed_us) // SMOOTHING
        self.samples += 1
        peer_coordinate = get_coordinate(sender)
        if peer_coordinate is not None:
            tiebreak = self.node_id + sender
            self.vivaldi = process_sample(self.vivaldi, peer_coordinate, sample_us, tiebreak)
        return True

    def get_coordinate(self) -> Coordinate:
        """This node's Vivaldi coordinate (the origin before its first sample)."""
        return self.vivaldi.coordinate

    def get_rtt_us(self) -> int:
        """The smoothed RTT in microseconds (0 before the first answer)."""
        return self.smoothed_us or 0
