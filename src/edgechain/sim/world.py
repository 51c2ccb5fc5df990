"""The simulated world a run starts from: the chain's parameters and one :class:`SimNode`
per identity, each with the real consensus engine a node runs (a misbehaving one where
the scenario or the caller asks) and, on the ``gossip`` overlay, its real DHT and gossip
objects; optionally a preset genesis holding every node.

Building it draws nothing from the run's random generator (``Simulation.rng``): each
node's DHT and gossip generators are seeded from the seed and the node's index, so the
world is the same whatever the run later does with that generator.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgechain.chain.assembly import EMPTY_SIGNATURE, make_inclusion_request, make_ticket
from edgechain.chain.encoding import compute_genesis_hash
from edgechain.chain.model import ChainParams, Genesis
from edgechain.consensus.engine import ConsensusEngine, EngineConfig
from edgechain.consensus.state import Memo
from edgechain.crypto import bls
from edgechain.network.dht import DhtNode
from edgechain.network.gossip import Gossip, GossipConfig
from edgechain.sim.byzantine import BEHAVIOURS, ReportDropper, make_byzantine_factory
from edgechain.sim.clock import Timer
from edgechain.sim.config import SimConfig
from edgechain.testing import ADMIN, Identity, make_identity
from edgechain.types import Signature

EngineFactory = Callable[[int, Identity, EngineConfig, Memo], ConsensusEngine]
"""Builds node ``index``'s engine in place of the honest :class:`ConsensusEngine`."""


@dataclass
class SimNode:
    index: int
    ident: Identity
    engine: ConsensusEngine
    honest: bool = True
    up: bool = True
    timer: Timer[Any] | None = None
    timer_at: int | None = None
    gossip: Gossip | None = None
    dht: DhtNode | None = None
    dht_wakeup: int | None = None
    peers_version: int = -1
    """The DHT membership version the gossip peer list was last built from."""


def choose_engines(
    config: SimConfig, engine_factory: EngineFactory | None, byzantine: frozenset[int]
) -> tuple[EngineFactory | None, frozenset[int]]:
    """The factory and the misbehaving nodes' indexes: the scenario's, unless the caller
    brought its own factory."""
    if config.faults == "byzantine-producer" and engine_factory is None:
        # Nodes 1..6 each misbehave one way (sim/byzantine.py); the rest are honest.
        assignment = {i + 1: kind for i, kind in enumerate(BEHAVIOURS) if i + 1 < config.nodes}
        return make_byzantine_factory(assignment), frozenset(assignment)
    if config.faults == "report-dropper" and engine_factory is None:
        # Every fourth node (1, 5, 9, ...) drops every report it should relay.
        droppers: dict[int, type[ConsensusEngine]] = dict.fromkeys(
            range(1, config.nodes, 4), ReportDropper
        )
        return make_byzantine_factory(droppers), frozenset(droppers)
    return engine_factory, byzantine


def make_chain_params(config: SimConfig) -> ChainParams:
    """The parameters the bootstrap node puts in genesis; the initial difficulty takes
    ``vdf_target_bp`` of a slot at the ``vdf_ips`` the virtual clock charges."""
    return ChainParams(
        chain_id=f"sim-{config.seed}",
        genesis_time_ms=0,
        slot_duration_ms=config.slot_duration_ms,
        committee_size=config.committee,
        initial_difficulty=max(
            1, config.vdf_ips * config.slot_duration_ms * config.vdf_target_bp // 10_000_000
        ),
        vdf_target_bp=config.vdf_target_bp,
        admin_key=ADMIN.pk,
        nodes_per_cluster=config.nodes_per_cluster,
        down_after_slots=config.down_after_slots,
        epoch_length=config.epoch_length,
    )


def make_identities(config: SimConfig) -> list[Identity]:
    """Node ``i``'s identity is ``make_identity(i, b"sim")``; node 0 is the bootstrap node."""
    bootstrap = make_identity(0, b"sim")
    return [bootstrap] + [make_identity(i, b"sim") for i in range(1, config.nodes)]


def make_engine_configs(
    config: SimConfig, params: ChainParams, idents: list[Identity]
) -> list[EngineConfig]:
    """One engine config per node; only the bootstrap node (0) holds the genesis template."""
    bootstrap = idents[0]
    configs: list[EngineConfig] = []
    for i, ident in enumerate(idents):
        engine_config = EngineConfig(
            chain_id=params.chain_id,
            genesis_key=bootstrap.pk,
            address=f"sim:{i}",
            labels=("region-a" if i % 2 == 0 else "region-b",),
            ticket=make_ticket(ADMIN.sk, params.chain_id, ident.pk),
            genesis_template=params if i == 0 else None,
            genesis_delay_ms=1_000,
            proof_scale=config.proof_scale,
            send_reports=config.send_reports,
        )
        configs.append(engine_config)
    return configs


def make_preset_genesis(
    config: SimConfig, params: ChainParams, idents: list[Identity], configs: list[EngineConfig]
) -> tuple[Genesis | None, Signature | None]:
    """With ``preset_genesis``, the genesis the bootstrap node would make once every node's
    inclusion request were in, signed by it; otherwise none (the nodes join)."""
    if not config.preset_genesis:
        return None, None
    requests = sorted(
        (
            make_inclusion_request(ident.sk, c.address, c.labels, c.ticket)
            for ident, c in zip(idents, configs, strict=True)
        ),
        key=lambda r: r.public_key,
    )
    genesis = Genesis(dataclasses.replace(params, genesis_time_ms=1_000), tuple(requests), 0)
    return genesis, bls.sign(idents[0].sk, compute_genesis_hash(genesis))


def make_nodes(
    config: SimConfig,
    params: ChainParams,
    memo: Memo,
    engine_factory: EngineFactory | None,
    byzantine: frozenset[int],
) -> list[SimNode]:
    """Every node, in index order, none started yet (the runner starts them)."""
    idents = make_identities(config)
    configs = make_engine_configs(config, params, idents)
    genesis, genesis_sig = make_preset_genesis(config, params, idents, configs)
    nodes: list[SimNode] = []
    for i, (ident, engine_config) in enumerate(zip(idents, configs, strict=True)):
        factory = engine_factory if (engine_factory and i in byzantine) else None
        engine = (
            factory(i, ident, engine_config, memo)
            if factory
            else ConsensusEngine(
                ident.sk,
                engine_config,
                memo=memo,
                genesis=genesis,
                genesis_signature=genesis_sig,
            )
        )
        if factory and genesis is not None:
            engine._adopt_genesis(genesis, genesis_sig or EMPTY_SIGNATURE)
        node = SimNode(i, ident, engine, honest=i not in byzantine)
        if config.overlay == "gossip":
            rng = random.Random(config.seed * 1_000_003 + i)
            node.dht = DhtNode(ident.node, random.Random(rng.getrandbits(64)))
            gossip_config = GossipConfig(
                fanout=config.gossip_fanout, heartbeat_ms=config.gossip_heartbeat_ms
            )
            node.gossip = Gossip(ident.node, random.Random(rng.getrandbits(64)), gossip_config)
        nodes.append(node)
    return nodes
