"""What every part of the consensus engine reads: who this node is, its configuration,
memo and counters, and the chain it holds (genesis, accepted blocks, their states, the
fork choice and its head).

The parts (``joining``, ``producer``, ``committee``, ``reports``, ``sync``,
``acceptance``) share one :class:`EngineContext`; :class:`ConsensusEngine
<edgechain.consensus.engine.ConsensusEngine>` creates it and wires the parts together.
Sans-I/O like the engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgechain.chain.encoding import compute_genesis_hash
from edgechain.chain.forkchoice import ForkChoice
from edgechain.chain.model import (
    ORIGIN,
    UNMEASURED_STATE_ROOM,
    AnyBlock,
    AppUsage,
    ChainParams,
    Coordinate,
    FinalityVote,
    Genesis,
)
from edgechain.consensus.messages import GenesisMsg
from edgechain.consensus.state import BlockState, Memo, compute_genesis_state
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import RejectReason
from edgechain.types import BlockHash, PublicKey, SecretKey, Signature

DEFAULT_GENESIS_DELAY_MS = 3_000
"""From creating the genesis to its first slot, unless the operator says otherwise
(``--genesis-delay``): time for the genesis to reach the first committee."""


@dataclass(frozen=True)
class EngineConfig:
    chain_id: str
    genesis_key: PublicKey
    """The key that signed the genesis, known to every node (paper §4 step 1): the
    trust anchor. Its node was the paper's bootstrap node; here it need not be reachable."""
    address: str
    labels: tuple[str, ...] = ()
    ticket: bytes = b""
    """Admission ticket from the network admin (empty on an open-admission chain)."""
    genesis_template: ChainParams | None = None
    """Bootstrap node only: the parameters of the genesis it will create."""
    genesis_delay_ms: int = DEFAULT_GENESIS_DELAY_MS
    proof_scale: int = 1
    future_tolerance_ms: int = 500
    sync_limit: int = 256
    max_orphans: int = 1_024
    max_block_items: int = 256
    inclusion_retry_ms: int = 8_000
    send_reports: bool = True
    last_vote: FinalityVote | None = None
    """This node's last finality vote, as persisted before a restart."""
    last_vote_genesis: BlockHash | None = None
    """The genesis ``last_vote`` was cast on, when the node did not know its own at
    start (its store was moved aside: ``node/vote_file.py``); a vote of another chain is
    dropped once the genesis is known. None: nothing to check."""


@dataclass(frozen=True)
class LocalUsage:
    """This node's measured resource use (from ``runtime/`` monitoring or the simulator)."""

    cpu_bp: int = 0
    ram_bp: int = 0
    disk_bp: int = 0
    rtt_us: int = 0
    apps: tuple[AppUsage, ...] = ()
    pressure_bp: int = 0
    """CPU pressure stall share in basis points (``ResourceReport.pressure_bp``)."""
    coordinate: Coordinate = ORIGIN
    """This node's Vivaldi coordinate (``cluster/vivaldi.py``, ``node/rtt.py``)."""
    state_room_bytes: int = UNMEASURED_STATE_ROOM
    """The app state the node can take in (``ResourceReport.state_room_bytes``)."""


@dataclass
class EngineStats:
    blocks_accepted: int = 0
    skip_blocks_accepted: int = 0
    blocks_produced: int = 0
    skip_blocks_assembled: int = 0
    votes_sent: int = 0
    skip_votes_sent: int = 0
    reorgs: int = 0
    peer_errors: Counter[RejectReason] = field(default_factory=Counter)


def get_genesis_hash(memo: Memo, genesis: Genesis) -> BlockHash:
    # Keyed by identity and holding the object, like Memo.get_block_hash.
    return memo.get(
        ("genesis-hash", id(genesis)), lambda: (genesis, compute_genesis_hash(genesis))
    )[1]


class EngineContext:
    """This node's identity, configuration, memo and counters, and the chain it holds."""

    def __init__(self, sk: SecretKey, config: EngineConfig, memo: Memo) -> None:
        self.sk = sk
        self.pk = bls.sk_to_pk(sk)
        self.node_id = compute_node_id(self.pk)
        self.config = config
        self.memo = memo
        self.stats = EngineStats()
        self.genesis: Genesis | None = None
        self.genesis_msg: GenesisMsg | None = None
        self.params: ChainParams | None = None
        self.fork: ForkChoice | None = None
        self.head: BlockHash | None = None
        self.states: dict[BlockHash, BlockState] = {}
        self.blocks: dict[BlockHash, AnyBlock] = {}

    def get_genesis_hash(self) -> BlockHash | None:
        return get_genesis_hash(self.memo, self.genesis) if self.genesis is not None else None

    def get_head_state(self) -> BlockState | None:
        return self.states[self.head] if self.head is not None else None

    def is_validator(self) -> bool:
        state = self.get_head_state()
        return state is not None and self.node_id in state.validators

    def get_branch_state(self, block_hash: BlockHash) -> BlockState | None:
        """The state after ``block_hash`` when a child of it may still join our chain:
        the block is in the fork-choice tree, i.e. not below the finalized root
        (``consensus/pruning.py``)."""
        if self.fork is None or block_hash not in self.fork:
            return None
        return self.states.get(block_hash)

    def get_chain(self, upto: BlockHash | None = None) -> list[BlockHash]:
        """Hashes from the oldest block held in memory (genesis excluded) to ``upto``
        (default: head), oldest first. Below the finalized root only the retained
        window is held (``consensus/pruning.py``); the store has the rest."""
        if self.fork is None or self.head is None:
            return []
        tip = upto or self.head
        chain = [tip, *self.fork.get_ancestors(tip)]
        # Below the root: the retained window of our own chain, by parent links.
        below = self.blocks.get(chain[-1])
        while below is not None and below.parent in self.blocks:
            chain.append(below.parent)
            below = self.blocks[below.parent]
        chain.reverse()
        return chain if chain[0] in self.blocks else chain[1:]

    def adopt_genesis(self, genesis: Genesis, signature: Signature) -> None:
        """Start the chain at ``genesis``: its parameters, fork choice, head and state."""
        genesis_hash = get_genesis_hash(self.memo, genesis)
        self.genesis = genesis
        self.genesis_msg = GenesisMsg(genesis, signature)
        self.params = genesis.params
        self.fork = ForkChoice(genesis_hash)
        self.head = genesis_hash
        self.states[genesis_hash] = self.memo.get(
            ("state", genesis_hash), lambda: compute_genesis_state(genesis)
        )

    def install_anchor(self, block: AnyBlock, block_hash: BlockHash, state: BlockState) -> None:
        """Continue the chain from ``block`` with ``state`` (checked against a root, or
        this node's own stored snapshot): it becomes the fork choice's root and the
        head; what memory held of the chain before is dropped."""
        self.fork = ForkChoice(block_hash, state.slot)
        self.head = block_hash
        # In place: other parts hold these dictionaries.
        self.states.clear()
        self.states[block_hash] = state
        self.blocks.clear()
        self.blocks[block_hash] = block
