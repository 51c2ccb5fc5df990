"""Network coordinates: each node's Vivaldi position, and the chain's bound on its moves.

Issue 15 (item 2) asks that the report overlay be latency-aware: a report should travel
to a representative that is *near* its node, not to one chosen by hash. Nodes therefore
place themselves on a 2-D map whose distances predict their round-trip times, with the
Vivaldi algorithm (Dabek, Cox, Kaashoek, Morris, "Vivaldi: a decentralized network
coordinate system", SIGCOMM 2004, Fig. 3 "adaptive timestep"): after each RTT sample to a
peer, a node moves along the line to that peer by a fraction of the error, the fraction
weighted by how sure it is of its own position against the peer's.

Two parts, with different rules:

* :func:`process_sample` is what a node computes *locally* from its own RTT probes
  (``node/rtt.py`` on a real node, the geographic model in the simulator). Nothing in
  consensus depends on how a node got its coordinate, but it is still integer arithmetic
  so that a simulation is the same on every machine.
* :func:`compute_next_coordinate` is a *consensus rule*: the chain keeps each validator's
  coordinate in its state (``BlockState.coordinates``) and moves it towards the one the
  node reports by at most :data:`MAX_STEP_US` per axis per report. A node starts at the
  origin, so whatever it claims it can never jump across the map: reaching a victim's
  cluster 100 ms away takes four reports (sixteen slots). That, and the representative
  being drawn from the slot's seed among the members (``cluster/kmeans.py``), keeps
  §4.3's defence: nobody can choose or predict who relays its neighbours' reports.

What a peer's coordinate is worth is not on the chain (a liar would claim certainty to
pull everyone towards it): every peer is taken to be :data:`PEER_ERROR_BP` unsure.
Coordinates are in microseconds of RTT, bounded by :data:`COORD_LIMIT_US` per axis;
Vivaldi's height vectors are left out (2-D is what the k-means overlay clusters on).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from edgechain.chain.model import BASIS_POINTS, COORD_LIMIT_US, ORIGIN, Coordinate

MAX_STEP_US = 25_000
"""How far the chain moves a validator's coordinate per report and axis (25 ms). Why
this much: a node reports every fourth slot, and its peers' positions are the chain's
copies, so Vivaldi can move no faster than they do. Measured in the simulator (60 nodes,
three regions 90 ms apart, 16 s slots): with 10 ms the clusters were no tighter than hash
positions after 40 slots; with 25 ms, members were 4.6 ms from their representative by
slot 37 (hash positions: 35 ms). Crossing the whole map still takes eight reports."""

CC_BP = 5_000
"""Vivaldi's c_c: the fraction of the weighted error a sample corrects. 0.5, where the
Vivaldi paper uses 0.25: here a node's peers are where the chain has them, up to four
slots behind, and the smaller step converged slowly. Measured on the model alone (1000
nodes in 8 regions, 3 samples a round, the chain's copies moved every 4 rounds): the
mean member-to-representative delay after 40 / 60 rounds was 15.6 / 6.9 ms with 0.25,
8.3 / 4.1 ms with 0.5, 9.3 / 7.6 ms with 0.75 (it overshoots)."""

CE_BP = 2_500
"""Vivaldi's c_e (0.25): how fast the error estimate follows the samples."""

PEER_ERROR_BP = 5_000
"""The error assumed of every peer's position (0.5), since the chain does not carry it."""

MIN_ERROR_BP = 100
"""The error never falls below 1 %: a node stays able to move when the network does."""

DIRECTION_DOMAIN = b"edgechain/vivaldi/v1"


@dataclass(frozen=True)
class VivaldiState:
    """A node's own position and how unsure it is of it (basis points, 10 000 = 1.0)."""

    coordinate: Coordinate = ORIGIN
    error_bp: int = BASIS_POINTS
    samples: int = 0


def compute_distance_us(a: Coordinate, b: Coordinate) -> int:
    """Euclidean distance, rounded down: the RTT the coordinates predict."""
    return math.isqrt((a.x_us - b.x_us) ** 2 + (a.y_us - b.y_us) ** 2)


def clamp_coordinate(c: Coordinate) -> Coordinate:
    """``c`` with each axis within ±:data:`COORD_LIMIT_US`."""
    return Coordinate(_clamp(c.x_us, COORD_LIMIT_US), _clamp(c.y_us, COORD_LIMIT_US))


def is_coordinate_in_bounds(c: Coordinate) -> bool:
    return abs(c.x_us) <= COORD_LIMIT_US and abs(c.y_us) <= COORD_LIMIT_US


def compute_next_coordinate(previous: Coordinate, reported: Coordinate) -> Coordinate:
    """The chain's coordinate of a node after it reports ``reported``: ``previous``
    moved towards it by at most :data:`MAX_STEP_US` on each axis (the consensus rule)."""
    return Coordinate(
        previous.x_us + _clamp(reported.x_us - previous.x_us, MAX_STEP_US),
        previous.y_us + _clamp(reported.y_us - previous.y_us, MAX_STEP_US),
    )


def process_sample(
    state: VivaldiState, peer: Coordinate, rtt_us: int, tiebreak: bytes
) -> VivaldiState:
    """One Vivaldi update (adaptive timestep) from an RTT sample to a peer at ``peer``.

    w = e_i / (e_i + e_j); the error follows |dist - rtt| / rtt with weight c_e·w; the
    node moves c_c·w·(rtt - dist) along the unit vector from the peer to itself. Two
    nodes at the same point (every node starts at the origin) push apart in a direction
    drawn from SHA-256 of ``tiebreak`` (the two node ids), so they separate the same way
    on every machine. All integers; floor division, so deterministic.
    """
    rtt = max(1, rtt_us)
    own = state.coordinate
    weight_bp = state.error_bp * BASIS_POINTS // (state.error_bp + PEER_ERROR_BP)
    distance = compute_distance_us(own, peer)
    sample_error_bp = min(BASIS_POINTS, abs(distance - rtt) * BASIS_POINTS // rtt)
    ce_w = CE_BP * weight_bp // BASIS_POINTS
    error_bp = (sample_error_bp * ce_w + state.error_bp * (BASIS_POINTS - ce_w)) // BASIS_POINTS
    force_us = CC_BP * weight_bp * (rtt - distance) // (BASIS_POINTS * BASIS_POINTS)
    dx, dy, norm = own.x_us - peer.x_us, own.y_us - peer.y_us, distance
    if norm == 0:
        dx, dy, norm = _get_direction(tiebreak)
    moved = Coordinate(own.x_us + force_us * dx // norm, own.y_us + force_us * dy // norm)
    return VivaldiState(clamp_coordinate(moved), max(MIN_ERROR_BP, error_bp), state.samples + 1)


def _get_direction(tiebreak: bytes) -> tuple[int, int, int]:
    """A non-zero integer vector and its (rounded-down, non-zero) length."""
    digest = hashlib.sha256(DIRECTION_DOMAIN + tiebreak).digest()
    dx = int.from_bytes(digest[0:2], "big") - 32_768
    dy = int.from_bytes(digest[2:4], "big") - 32_768
    if dx == 0 and dy == 0:
        dx = 1
    return dx, dy, max(1, math.isqrt(dx * dx + dy * dy))


def _clamp(v: int, bound: int) -> int:
    return max(-bound, min(bound, v))
