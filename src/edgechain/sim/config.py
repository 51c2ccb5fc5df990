"""What a simulation run is given: :class:`SimConfig` and the fault scenarios it names.

Kept apart from the runner so the modules that build and drive a run (``sim/world.py``,
``sim/transport.py``, ``sim/runner.py``) read the same config without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgechain.sim.apps import AppModelConfig

SCENARIOS = (
    "none",
    "crash-producers",
    "partition-heal",
    "byzantine-producer",
    "report-dropper",
    "lossy",
    "churn",
    "app-host-crash",
    "app-host-pause",
    "reorg-apps",
    "fleet-outage",
    "late-join",
)


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 20
    committee: int = 8
    slots: int = 30
    slot_duration_ms: int = 2_000
    latency_ms: tuple[int, int] = (0, 5)
    seed: int = 1
    faults: str = "none"
    vdf_ips: int = 180_000
    """Iterations per second the virtual clock charges (measured: chiavdf ~180k/s here)."""
    proof_scale: int = 1_000
    vdf_target_bp: int = 2_500
    send_reports: bool = True
    nodes_per_cluster: int = 20
    agreement_depth: int = 4
    """Honest nodes must agree on everything older than this many slots."""
    convergence_slots: int = 6
    """After a partition heals, one head everywhere within this many slots."""
    overlay: str = "gossip"
    """``gossip``: every node runs the real DHT (``network/dht.py``) and gossip
    (``network/gossip.py``) objects, and gossip spreads through DHT neighbours.
    ``broadcast``: a gossiped message goes straight to every node, plus the relay below."""
    gossip_relay: int = 4
    """With ``broadcast``: each node forwards a block it sees first to this many random
    peers; 0 makes gossip a single direct broadcast."""
    gossip_fanout: int = 8
    gossip_heartbeat_ms: int = 2_000
    preset_genesis: bool = False
    """Start from a genesis holding every node, as if the bootstrap node had gathered
    all requests (skips the join phase, which is not what large runs measure)."""
    trace: bool = True
    """Hash every network event into a digest (byte-identical-trace checks)."""
    apps: int = 0
    """Apps the admin submits after genesis; > 0 (or an app scenario) runs the app
    layer and its exactly-once auditor (``sim/apps.py``)."""
    down_after_slots: int = 12
    """K (``ChainParams.down_after_slots``)."""
    epoch_length: int = 8
    """``ChainParams.epoch_length``; with K it sets the report interval
    (``ChainParams.report_interval_slots``)."""
    app_model: AppModelConfig = field(default_factory=AppModelConfig)
    geo_regions: int = 0
    """0: uniform latency as before; N > 0: nodes in N regions, delay by distance
    (``sim/geography.py``) plus the ``latency_ms`` draw as jitter."""
