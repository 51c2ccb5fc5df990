"""The chain's data model: frozen dataclasses for everything a block carries.

Paper §3.2-§3.3: blocks are snapshots of the system, not transactions. A block holds
the resource reports of the nodes, the migration plan computed from its parent, the
validator-set changes, the application submissions, the VDF output and proof seeding
the next slot's roles, and the committee's aggregate attestation.

Every quantity consensus depends on is an integer (Rule 2): resource shares are in
basis points (1/100 of a percent, 0..10 000), times in milliseconds, RTT in
microseconds, network use in bytes per second. The canonical byte encoding of each
type lives in ``chain/encoding.py`` and the ``chain/*_encoding.py`` modules it uses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgechain.types import AppId, BlockHash, NodeId, PublicKey, ReportSignature, Signature, Slot

NO_SIGNATURE = Signature(b"\x00" * 96)
"""Placeholder of an object not signed yet (``chain.assembly.EMPTY_SIGNATURE``)."""
NO_REPORT_SIGNATURE = ReportSignature(b"\x00" * 64)
"""Placeholder of a report not signed yet (``chain.assembly.make_report``)."""

BASIS_POINTS = 10_000
"""100.00 %: resource shares are integers in [0, BASIS_POINTS]."""


MIN_MEMORY_LIMIT_BYTES = 6 * 1024 * 1024
"""The smallest memory limit a spec may set: Docker refuses less than 6 MiB (and a
container needs a few MiB to start at all), so a smaller one could never run anywhere."""

MIN_CPU_LIMIT_MILLICORES = 10
"""The smallest CPU limit a spec may set: engines refuse fewer than 0.01 cores."""

MAX_CPU_LIMIT_MILLICORES = 1_024_000
"""1024 cores: far beyond any edge device, well within the encoding's u32."""

MAX_MEMORY_LIMIT_BYTES = 2**48
"""256 TiB: a sanity bound, not a device size."""

MIN_STATE_LIMIT_BYTES = 1024 * 1024
"""The smallest state limit: a file system of its own (``runtime/state_quota.py``)
cannot be made smaller."""

MAX_STATE_LIMIT_BYTES = 2**40
"""1 TiB of state: more could not migrate within any slot budget anyway."""


class RuntimeKind(enum.IntEnum):
    """How an application runs on a node (``runtime/``)."""

    PROCESS = 1
    CONTAINER = 2


@dataclass(frozen=True)
class AppPolicy:
    """Per-application placement policy (DESIGN.md, "Migration plan" target).

    ``pinned``: the app never moves once placed (an empty ``pin_node`` means "wherever it
    is first placed"; a set ``pin_node`` forces that node). ``allowed_labels``: a node
    must carry at least one of these labels (geo-fencing); empty means any node.
    ``anti_affinity``: apps sharing a non-empty group avoid sharing a node.
    ``min_interval_slots``: minimum number of slots between two moves of this app.
    ``wait_for_state`` (block format 18; stateful apps only): when the app's node is down,
    it is recovered only onto the replica node the chain confirmed to hold its state
    (``AppRecord.state_node``) or where an operator's MOVE sends it; otherwise it
    waits, where by default it starts again on another node from an empty state
    (``orchestrator/placement.py``).
    """

    pinned: bool = False
    pin_node: bytes = b""
    allowed_labels: tuple[str, ...] = ()
    anti_affinity: str = ""
    min_interval_slots: int = 0
    wait_for_state: bool = False


@dataclass(frozen=True)
class AppSpec:
    """An application submitted through any node's API and placed by the planner.

    ``image`` names a container image (container runtime); ``command`` the argv of a
    plain process (process runtime). ``cpu_bp``/``ram_bp`` are resource hints used to
    place the app before it has reported. The spec carries no identity: an app's id
    comes from the SUBMIT command that created it (``compute_submitted_app_id``), so an
    UPDATE can change the spec and keep the id, and two identical specs are two apps.
    """

    name: str
    runtime: RuntimeKind
    image: str = ""
    command: tuple[str, ...] = ()
    cpu_bp: int = 0
    ram_bp: int = 0
    stateful: bool = False
    policy: AppPolicy = field(default_factory=AppPolicy)
    replica_interval_slots: int = 0
    """A stateful app's opt-in to state replicas: every this many slots its node streams
    a snapshot of its state to the replica node the plan names (0: no replicas). A
    re-placed app restarts from its latest replica (DESIGN.md, "Exactly once")."""
    # Resource limits (block format 5). Keyword-only, so the positional fields above keep
    # their meaning in every existing call. 0 / False: no limit, the engine's defaults.
    cpu_limit_millicores: int = field(default=0, kw_only=True)
    """Hard CPU cap, in thousandths of a core (1000 = one core): the container engine
    enforces it (CFS quota). A process-runtime app may carry it, but nothing enforces it
    there."""
    memory_limit_bytes: int = field(default=0, kw_only=True)
    """Hard memory cap in bytes, swap included (the engine OOM-kills beyond it); if set,
    at least ``MIN_MEMORY_LIMIT_BYTES``. Not enforced on the process runtime."""
    state_limit_bytes: int = field(default=0, kw_only=True)
    """How large the app's state directory may grow, in bytes (``runtime/state_quota.py``
    says what enforces it)."""
    run_as_root: bool = field(default=False, kw_only=True)
    """The container runs as root inside (uid 0), only on nodes whose operator allowed
    it; otherwise containers run as the node's unprivileged app user. Refused for the
    process runtime: apps never run as root there."""


class CommandKind(enum.IntEnum):
    """What a signed command asks for (DESIGN.md, "Who may change what runs").

    App commands (1-6) may be signed by an operator or the admin; authority and node
    commands (10-14) by the admin only.
    """

    SUBMIT = 1
    """``spec``: a new app, queued for placement; its id is derived from signer and seq."""
    UPDATE = 2
    """``app``, ``spec``: a new spec version; same id, same node, state kept."""
    STOP = 3
    """``app``: stop it where it is; it keeps its node and its state."""
    START = 4
    """``app``: run a stopped app again."""
    MOVE = 5
    """``app``, ``node``: the planner migrates the app to ``node`` (policy permitting)."""
    REMOVE = 6
    """``app``: the app is deleted, with its state."""
    GRANT_OPERATOR = 10
    """``key``: a 48-byte BLS public key becomes an operator."""
    REVOKE_OPERATOR = 11
    """``key``: an operator key is refused from the next block on."""
    EXCLUDE_NODE = 12
    """``node``: the validator leaves the set and may not rejoin with its key."""
    DRAIN_NODE = 13
    """``node``: the validator is ``draining``: it stays in the set, the planner places
    nothing on it and migrates its apps away (maintenance, a graceful shutdown)."""
    UNDRAIN_NODE = 14
    """``node``: a draining validator takes apps again."""
    REVOKE_ENROLLMENT = 15
    """``key``: the 32-byte id of an enrollment token (``chain/enrollment.py``): no
    block includes a node with it from the next block on (format 10)."""


APP_COMMANDS = frozenset(
    {
        CommandKind.SUBMIT,
        CommandKind.UPDATE,
        CommandKind.STOP,
        CommandKind.START,
        CommandKind.MOVE,
        CommandKind.REMOVE,
    }
)


@dataclass(frozen=True)
class SignedCommand:
    """A command that changes what runs, signed by an operator (or the admin).

    The signature covers a domain tag, the chain id and every field but itself
    (``compute_command_signing_root``), so a command cannot be replayed on another chain;
    ``seq`` must exceed the signer's last applied sequence number (replay protection, see
    ARCHITECTURE.md, "Signed commands"). Unused fields are empty.
    """

    signer: PublicKey
    seq: int
    kind: CommandKind
    app: bytes = b""
    """32-byte AppId (every app command but SUBMIT)."""
    node: bytes = b""
    """32-byte NodeId (MOVE target, EXCLUDE_NODE)."""
    key: bytes = b""
    """48-byte public key (GRANT_OPERATOR, REVOKE_OPERATOR), or a 32-byte enrollment
    token id (REVOKE_ENROLLMENT)."""
    spec: AppSpec | None = None
    """SUBMIT and UPDATE."""
    signature: Signature = NO_SIGNATURE


@dataclass(frozen=True)
class Coordinate:
    """A node's network coordinate (Vivaldi, ``cluster/vivaldi.py``): a point on a 2-D
    map whose distances predict round-trip times, in microseconds of RTT per axis."""

    x_us: int
    y_us: int


ORIGIN = Coordinate(0, 0)
"""Where every node starts, and where the chain keeps a validator that never reported."""

COORD_LIMIT_US = (1 << 21) - 1
"""Each axis of a reported coordinate stays within ±2.1 s of RTT: far beyond any real
path, and small enough that the overlay maps a coordinate onto its 16-bit grid by a
shift (``cluster/kmeans.py``). A report beyond it is invalid."""


@dataclass(frozen=True)
class AppUsage:
    """One application's resource vector, paper §3.2: {app, cpu, ram, disk, network, t}."""

    app: AppId
    cpu_bp: int
    ram_bp: int
    disk_bp: int
    net_bps: int
    """Network bytes (not bits) sent and received per second (``runtime/net_traffic.py``)."""
    timestamp_ms: int
    state_bytes: int = 0
    """Size of the app's state a migration would transfer (its state directory or
    volume), so the planner weighs a move's gain against its transfer cost."""


@dataclass(frozen=True, order=True)
class Checkpoint:
    """An epoch boundary of a chain: the latest block at or before slot
    ``epoch * epoch_length`` (Casper FFG's checkpoint, ``chain/finality.py``)."""

    epoch: int
    block: BlockHash


@dataclass(frozen=True)
class FinalityVote:
    """A validator's Casper FFG vote, carried in its signed report: "the chain from
    ``source`` (justified in my view) to ``target`` is the one I follow". Honest nodes
    never sign two votes with the same target epoch, nor one whose span surrounds
    another of theirs (``consensus/finality_votes.py``)."""

    source: Checkpoint
    target: Checkpoint


UNMEASURED_STATE_ROOM = (1 << 63) - 1
"""A report's ``state_room_bytes`` when its node does not measure its disk: no limit."""


@dataclass(frozen=True)
class ResourceReport:
    """A node's signed report of its own totals and its applications (paper Table 2).

    Built on the block of ``slot - 1`` and carried by the producer of ``slot``. The
    node signs the report's canonical encoding (without the signature) with its Ed25519
    report key (``crypto/report_key.py``), so that a cluster representative cannot
    forge it and every node can check a block's reports cheaply.
    """

    node: NodeId
    slot: Slot
    timestamp_ms: int
    cpu_bp: int
    ram_bp: int
    disk_bp: int
    rtt_us: int
    apps: tuple[AppUsage, ...]
    signature: ReportSignature
    pressure_bp: int = 0
    """CPU pressure: the share of time some runnable task waited for a CPU (Linux PSI,
    ``/proc/pressure/cpu`` "some avg10"), in basis points. With ``cpu_bp`` at capacity it
    tells the planner that the apps' measured usage is a starved share, not their demand
    (``orchestrator/load.py``). Encoded after ``rtt_us``."""
    vote: FinalityVote | None = None
    """The node's finality vote (format 7), encoded after the apps: one flag byte, then
    source epoch, source block, target epoch, target block."""
    coordinate: Coordinate = ORIGIN
    """The node's own Vivaldi coordinate (format 11), encoded after ``pressure_bp`` as
    two signed 32-bit integers; the chain moves its copy towards it by a bounded step
    (``cluster/vivaldi.compute_next_coordinate``)."""
    state_room_bytes: int = UNMEASURED_STATE_ROOM
    """How many bytes of app state the node can take in (format 17): the free space of
    its data directory's file system above what the node keeps for itself
    (``runtime/disk_guard.DiskSpace.get_state_room``), encoded after the coordinate as a
    64-bit integer. The planner sends no app to a node whose room its state exceeds
    (``orchestrator/plan_state.py``); a node that cannot measure it (the simulator)
    reports :data:`UNMEASURED_STATE_ROOM`."""


class PlanAction(enum.IntEnum):
    PLACE = 1
    """Start a newly submitted (queued) app on ``destination``; ``origin`` is empty."""

    MIGRATE = 2
    """Move a running app from ``origin`` to ``destination``."""

    RECOVER = 3
    """``origin`` is down (no contribution to the chain for ``down_after_slots``): start
    the app on ``destination``, from its latest state replica when it has one. Nothing
    is transferred: the origin's copy is fenced (its lease expired) and stale."""

    REPLICA = 4
    """``destination`` becomes the app's replica node; ``origin`` is the app's node,
    which streams state snapshots there. Nothing starts or stops."""


@dataclass(frozen=True)
class PlanEntry:
    """One line of the migration plan (paper Algorithm 1's output)."""

    action: PlanAction
    app: AppId
    origin: bytes
    """A 32-byte NodeId (the app's node) for MIGRATE, RECOVER and REPLICA; empty for
    PLACE."""
    destination: NodeId


@dataclass(frozen=True)
class InclusionRequest:
    """A node's signed request to join the validator set (paper §4 step 7).

    ``pop`` is the proof of possession of ``public_key`` (rogue-key defence);
    ``ticket`` is the network admin's signature over the public key (permissioned
    admission; empty when the chain's admission is open); ``signature`` is the node's
    own signature over the request. ``address`` is ``host:port`` of its transport.
    """

    public_key: PublicKey
    pop: Signature
    address: str
    labels: tuple[str, ...]
    ticket: bytes
    signature: Signature
    nonce: int = 0
    """The slot the request was made in (0 before genesis): a node that was excluded
    asks again with a new request, which gossip does not mistake for the old one."""
    report_key: bytes = b""
    """The node's 32-byte Ed25519 report key, bound to ``public_key`` by ``signature``
    (which covers it); its reports are verified under it (``crypto/report_key.py``)."""


@dataclass(frozen=True)
class ExitRequest:
    """A validator's signed request to leave the set from ``slot`` on."""

    node: NodeId
    slot: Slot
    signature: Signature


@dataclass(frozen=True)
class AddressRecord:
    """A validator's signed new address (issue 16): where it is reached from ``slot`` on,
    after a restart on another port or a new IP. A block carrying it changes the
    validator's address for every node; only a record newer than the address it
    replaces applies (``ValidatorInfo.address_slot``), so an old one cannot be replayed."""

    node: NodeId
    address: str
    slot: Slot
    signature: Signature


@dataclass(frozen=True)
class ChainParams:
    """Parameters fixed by genesis."""

    chain_id: str
    genesis_time_ms: int
    slot_duration_ms: int
    committee_size: int
    epoch_length: int = 8
    """Slots per finality epoch (``chain/finality.py``): at least twice
    :attr:`report_interval_slots`, so every node votes in every epoch."""
    initial_difficulty: int = 10_000
    vdf_target_bp: int = 2_500
    """VDF evaluation should take this share of the slot (difficulty rule)."""
    admin_key: bytes = b""
    """48-byte admin public key: it signs admission tickets and grants operator keys.
    Empty means no admin: open admission and no app can ever be authorised (simulations
    of the consensus core only)."""
    nodes_per_cluster: int = 20
    max_migrations_per_slot: int = 4
    open_admission: bool = False
    """Nodes join without an admission ticket (labs); the admin key still rules apps."""
    down_after_slots: int = 12
    """K: a validator with no contribution on chain (block, vote, report) for this many
    slots is ``down``: it gets no placements and its apps are recovered elsewhere
    (``orchestrator/liveness.py``). Reports come every :attr:`report_interval_slots`
    (4 by default), so 12 leaves a live node two lost reports of slack."""
    vdf_group_epochs: int = 4
    """Finality epochs one VDF group (its 1024-bit discriminant) serves: the group
    changes every ``epoch_length * vdf_group_epochs`` slots (``vdf_group_slots``). Each
    change costs every node a discriminant search (~17 ms) at the same moment; at one
    per 8-slot epoch that was 2 ms of every node's slot (ARCHITECTURE.md, "One
    discriminant per group period")."""

    @property
    def report_interval_slots(self) -> int:
        """Every node reports every this many slots, each at its own phase
        (``consensus/reports.py``): the most that leaves a live node two lost reports
        of slack before :attr:`down_after_slots` and a finality vote in every epoch
        (two a epoch), 4 with the defaults. A block carries about ``N /`` this many
        reports, the part of every node's slot that grows with the fleet (issue 13):
        a genesis with a longer ``down_after_slots`` and ``epoch_length`` trades a
        slower recovery of a dead node's apps and a later finality for fewer reports
        a block (ARCHITECTURE.md, "The CPU budget", session 39)."""
        return max(1, min(self.down_after_slots // 3, self.epoch_length // 2))

    @property
    def vdf_group_slots(self) -> int:
        """Slots between changes of the VDF group (``consensus/state.compute_vdf_group``)."""
        return self.epoch_length * self.vdf_group_epochs


MAX_VDF_GROUP_EPOCHS = 64
"""Upper bound on ``ChainParams.vdf_group_epochs``: a group must not outlive a few
minutes of slots (Chia keeps one discriminant about ten minutes)."""


@dataclass(frozen=True)
class Genesis:
    """The first block: chain parameters and the initial validators (paper §4 step 6)."""

    params: ChainParams
    inclusions: tuple[InclusionRequest, ...]
    timestamp_ms: int


@dataclass(frozen=True)
class Block:
    """A produced block (paper §3.3).

    The block hash covers everything except the three signature fields, so producer
    signature and committee votes both sign the hash, and the attestation can be
    attached without changing the block's identity. ``difficulty`` is the number of
    VDF iterations the *child* of this block must evaluate; this block's own VDF used
    its parent's difficulty (paper: P_n = VDF(hash_{n-1}, difficulty_{n-1})).
    """

    parent: BlockHash
    slot: Slot
    epoch: int
    producer: NodeId
    timestamp_ms: int
    difficulty: int
    vdf_output: bytes
    vdf_proof: bytes
    state_root: bytes
    """The root of the state after ``parent`` (``consensus/state_codec.py``): what a
    node syncing from a checkpoint checks a fetched state against. The parent's state,
    not this block's own: that one holds this block's hash."""
    reports: tuple[ResourceReport, ...]
    plan: tuple[PlanEntry, ...]
    inclusions: tuple[InclusionRequest, ...]
    exits: tuple[ExitRequest, ...]
    commands: tuple[SignedCommand, ...]
    """Signed app and authority commands, applied in this order after the plan."""
    producer_signature: Signature
    signers: bytes
    """Bitfield over the elected committee in election order, bit i = byte i//8, bit i%8."""
    aggregate_signature: Signature
    addresses: tuple[AddressRecord, ...] = ()
    """Validators' new addresses (format 9), applied after the exits and inclusions."""


@dataclass(frozen=True)
class SkipBlock:
    """The deterministic block a committee signs when the producer is silent (§3.4).

    It carries only the exclusion of the silent producer. Its hash covers parent, slot
    and the excluded node, so every committee member signs the same bytes.
    """

    parent: BlockHash
    slot: Slot
    excluded: NodeId
    signers: bytes
    aggregate_signature: Signature


AnyBlock = Block | SkipBlock
