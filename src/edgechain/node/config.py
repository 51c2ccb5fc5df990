"""What a node is told at start (:class:`NodeConfig`) and the engine that follows from it.

``make_engine`` turns the configuration into a :class:`ConsensusEngine`: the chain's
parameters when this node creates the chain (the VDF difficulty measured on this
machine), the address and labels of its inclusion request, and the genesis a restarted
node finds in its store. Kept apart from ``node.py`` because none of it runs in the
node's loop: it is read once, before the loop starts.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.encoding import compute_genesis_hash, decode_genesis
from edgechain.chain.model import ChainParams, Genesis
from edgechain.chain.store.block_store import BlockStore
from edgechain.chain.store.blocks import GenesisRecord
from edgechain.consensus.context import DEFAULT_GENESIS_DELAY_MS
from edgechain.consensus.engine import ConsensusEngine, EngineConfig
from edgechain.crypto import bls, vdf
from edgechain.errors import DecodeError, LocalError
from edgechain.network.transport import join_address
from edgechain.node.archive import get_last_vote, get_other_version_error
from edgechain.node.leaving import DEFAULT_DRAIN_TIMEOUT_MS
from edgechain.node.vote_file import VOTE_FILE_NAME, get_start_vote
from edgechain.telemetry import logs
from edgechain.types import SecretKey, Signature

log = logging.getLogger("edgechain.node")

HOSTILE_ENV = "EDGECHAIN_HOSTILE"
"""Names hostile behaviours for chaos experiments (``hostile.py``): only then does the
node import that module."""


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    listen: str = "127.0.0.1:0"
    http: str = "127.0.0.1:0"
    advertise_host: str | None = None
    seeds: tuple[str, ...] = ()
    """Addresses to find the network through (``--seeds``; node/seeds.py)."""
    genesis_key: bytes = b""
    """The key that signed the genesis (``--genesis-key``): the trust anchor."""
    chain_id: str = "edgechain"
    admin_key: bytes = b""
    ticket: bytes = b""
    open_admission: bool = False
    """Genesis only: nodes join without a ticket (labs); the admin key still rules apps."""
    genesis: bool = False
    committee: int = 8
    epoch_length: int = 8
    """Genesis only (``ChainParams.epoch_length``)."""
    down_after_slots: int = 12
    """Genesis only (``ChainParams.down_after_slots``); with ``epoch_length`` it sets
    the report interval (``ChainParams.report_interval_slots``)."""
    slot_duration_ms: int = 2_000
    genesis_delay_ms: int = DEFAULT_GENESIS_DELAY_MS
    """Genesis only: from creating the genesis to its first slot (``EngineConfig``)."""
    vdf_target_bp: int = 2_500
    initial_difficulty: int | None = None
    labels: tuple[str, ...] = ()
    ready_file: Path | None = None
    operator_key: Path | None = None
    """A keystore file with an operator key: the node signs SUBMIT commands with it for
    local callers who present its API token (``POST /apps``)."""
    app_user: str = "nobody"
    """``USER[:GROUP]`` that apps run as when the node is root (never root)."""
    container_engine: str | None = None
    """The Engine API URL of the node's Docker or Podman (``--container-engine``): the
    node then runs container apps and declares it in its inclusion labels
    (``orchestrator.policy.CONTAINER_ENGINE_LABEL``). None: process apps only."""
    allow_root_containers: bool = False
    """Container apps whose spec asks for it may run as root inside their container
    (``--allow-root-containers``; declared by ``policy.ROOT_CONTAINERS_LABEL``)."""
    container_network: str = "none"
    """Network mode of the node's containers (``--container-network``)."""
    cpu_capacity: float | None = None
    """Cores this node offers its apps (``--cpu-capacity``): every CPU share it reports is
    of this many cores, its total is the sum of its apps' (its own process left out),
    and it reports no host-wide CPU pressure (``runtime/usage.py``). None: the whole
    host."""
    leave_on_sigterm: bool = False
    """SIGTERM makes the node leave (drain, exit, stop: node/leaving.py) instead of
    stopping at once; a second SIGTERM stops it at once (``--leave-on-sigterm``)."""
    leave_timeout_ms: int = DEFAULT_DRAIN_TIMEOUT_MS
    """How long a leave waits for the apps to move away (``--leave-timeout``)."""
    clock_offset_ms: int = 0
    """Milliseconds added to every wall-clock read of the node and of its fencing
    watchdog (``--clock-offset-ms``; negative: behind): a device whose clock is that far
    off, for clock-skew experiments (``node/clock.py``)."""


def measure_vdf_ips(iterations: int = 20_000) -> int:
    """Iterations per second of this machine (for the genesis difficulty)."""
    started = time.perf_counter()
    vdf.prove(os.urandom(32), os.urandom(32), iterations)
    return max(1, int(iterations / max(time.perf_counter() - started, 1e-6)))


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
PROBE_ADDRESS = ("192.0.2.1", 9)
"""TEST-NET-1 (RFC 5737): never routed, so a UDP socket "connected" to it only asks the
kernel which local address its default route would use; nothing is sent."""


def get_advertise_host(advertise_host: str | None, listen_host: str, seeds: tuple[str, ...]) -> str:
    """The host other nodes reach us at: ``--advertise-host``, else the listen host,
    else (listening on every interface, as in a container) the local address of the
    route to the first seed that resolves, or of the default route (a genesis node),
    else loopback. No packet is sent: connecting a UDP socket only picks the route."""
    if advertise_host:
        return advertise_host
    if listen_host not in WILDCARD_HOSTS:
        return listen_host
    targets = [split_seed(seed) for seed in seeds]
    for host, port in [*targets, PROBE_ADDRESS]:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((host, port))
                local = str(probe.getsockname()[0])
        except (OSError, UnicodeError):
            continue
        if not local.startswith("127.") and local != "0.0.0.0":
            return local
    return "127.0.0.1"


def split_seed(seed: str) -> tuple[str, int]:
    """``host:port`` (the port 0 when missing or not a number: the route is the same)."""
    host, _, port = seed.rpartition(":")
    return (host or seed, int(port)) if port.isdigit() else (seed, 0)


def get_stored_genesis(stored: GenesisRecord) -> Genesis:
    """The stored genesis, which must hash under this build's block format to the hash
    it was stored under: the format version names the hash domain, so a chain written
    by another version is refused here, before any of its blocks is replayed."""
    try:
        genesis = decode_genesis(stored.encoded)
    except DecodeError as exc:
        raise get_other_version_error(f"its genesis does not decode: {exc}") from exc
    if compute_genesis_hash(genesis) != stored.hash:
        raise get_other_version_error("its genesis hashes otherwise under this block format")
    return genesis


TICKET_META = "admission_ticket"
"""The store's meta key of the ticket or enrollment token the node last started with."""


def get_kept_ticket(store: BlockStore, given: bytes) -> bytes:
    """What the node's inclusion request presents: the ticket or enrollment token it
    was given, kept in its store, else the one kept from an earlier start. A validator
    excluded while it was down asks to join again when it comes back; started without
    its ``--ticket`` (a restart by hand, a unit file that had it only the first time),
    it could never rejoin (session 59). A node that is given one presents that one."""
    if given:
        if store.get_meta(TICKET_META) != given:
            store.put_meta(TICKET_META, given)
        return given
    kept = store.get_meta(TICKET_META) or b""
    if kept:
        logs.info(log, "admission: the ticket kept from an earlier start", size=len(kept))
    return kept


def make_engine(
    cfg: NodeConfig,
    sk: SecretKey,
    store: BlockStore,
    *,
    listen_host: str,
    port: int,
    labels: tuple[str, ...],
) -> ConsensusEngine:
    """The engine of a node listening on ``listen_host:port`` whose inclusion request
    carries ``labels``; with the genesis from ``store`` if the node has one."""
    advertise = get_advertise_host(cfg.advertise_host, listen_host, cfg.seeds)
    template = None
    if cfg.genesis:
        if not cfg.admin_key:
            raise LocalError("a new chain needs an admin key (--admin-key)")
        difficulty = cfg.initial_difficulty or max(
            1, measure_vdf_ips() * cfg.slot_duration_ms * cfg.vdf_target_bp // 10_000_000
        )
        template = ChainParams(
            chain_id=cfg.chain_id,
            genesis_time_ms=0,
            slot_duration_ms=cfg.slot_duration_ms,
            committee_size=cfg.committee,
            epoch_length=cfg.epoch_length,
            down_after_slots=cfg.down_after_slots,
            initial_difficulty=difficulty,
            vdf_target_bp=cfg.vdf_target_bp,
            admin_key=cfg.admin_key,
            open_admission=cfg.open_admission,
        )
    stored = store.get_genesis()
    last_vote, last_vote_genesis = get_start_vote(
        get_last_vote(store),
        stored.hash if stored is not None else None,
        cfg.data_dir / VOTE_FILE_NAME,
    )
    engine_config = EngineConfig(
        chain_id=cfg.chain_id,
        genesis_key=bls.sk_to_pk(sk) if cfg.genesis else cfg.genesis_key,  # type: ignore[arg-type]
        address=join_address(advertise, port),
        labels=labels,
        ticket=get_kept_ticket(store, cfg.ticket),
        genesis_template=template,
        genesis_delay_ms=cfg.genesis_delay_ms,
        last_vote=last_vote,
        last_vote_genesis=last_vote_genesis,
    )
    genesis = get_stored_genesis(stored) if stored is not None else None
    signature = store.get_meta("genesis_signature")
    return ConsensusEngine(
        sk,
        engine_config,
        genesis=genesis,
        genesis_signature=Signature(signature) if signature else None,
    )
