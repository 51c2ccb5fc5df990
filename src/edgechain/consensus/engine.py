"""The consensus engine: paper Algorithm 3 as a sans-I/O state machine.

Inputs: ``on_tick(now)``, ``on_message(msg, sender, now)``, ``on_vdf_result(...)`` and
API commands (``submit_command``, ``request_exit``, ``set_local_usage``). Each returns an
:class:`~edgechain.consensus.messages.Output`: messages with their routes, VDF
evaluations to run, events, and when to be woken next. No clock, no sockets, no
unseeded randomness: ``node.py`` drives it over asyncio, ``sim/`` over a virtual clock.

Per slot ``s`` on the head ``H`` (the fork-choice head):

* every node elects the roles of ``s`` from ``H``'s seed (Algorithm 2);
* the **producer** evaluates the VDF on ``H``, builds the candidate (the reports it was
  sent, the plan recomputed from ``H``, pending inclusions, exits and signed commands),
  signs it and sends it to the committee; it aggregates votes until all are in or 2/3
  of the slot has passed, and gossips the block if a majority of the committee signed;
* a **committee member** fully validates the candidate (VDF, plan, signatures) and
  votes once per slot; with no valid candidate by 2/3 of the slot it signs the skip
  block excluding the producer and sends it to the committee; whoever holds a majority
  of skip votes assembles and gossips the skip block;
* every node accepts only fully validated blocks; fork choice picks the branch with the
  most cumulative attestations; unknown parents are synced from the sender (§3.5).

Resource reports (§3.2) flow node → cluster representative → next producer, over the
deterministic k-means overlay seeded by the head's seed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgechain.chain.assembly import (
    EMPTY_SIGNATURE,
    attach_attestation,
    make_exit_request,
    make_inclusion_request,
    make_report,
    sign_as_producer,
    sign_vote,
)
from edgechain.chain.attestation import is_majority
from edgechain.chain.authority import is_banned
from edgechain.chain.encoding import (
    compute_block_hash,
    compute_genesis_hash,
    compute_report_signing_root,
    compute_vote_message,
)
from edgechain.chain.forkchoice import ForkChoice
from edgechain.chain.model import (
    AnyBlock,
    AppUsage,
    Block,
    ChainParams,
    ExitRequest,
    Genesis,
    InclusionRequest,
    PlanAction,
    ResourceReport,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.validation import (
    validate_exit,
    validate_genesis,
    validate_inclusion,
)
from edgechain.chain.validator_set import compute_skip_exclusion
from edgechain.cluster.kmeans import Clustering, compute_clusters
from edgechain.consensus.command_pool import CommandPool
from edgechain.consensus.messages import (
    BlockAccepted,
    BlockMsg,
    CandidateMsg,
    CommandMsg,
    ExitMsg,
    GenesisCreated,
    GenesisMsg,
    HeadChanged,
    InclusionMsg,
    Message,
    MigrationOrder,
    Outgoing,
    Output,
    PeerRejected,
    ReportMsg,
    Route,
    SkipVoteMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VdfRequest,
    VoteMsg,
)
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import (
    BlockState,
    Memo,
    ValidationMode,
    apply_block,
    compute_genesis_state,
    compute_next_difficulty,
    get_candidate_deadline_ms,
    get_current_slot,
    get_plan,
    get_proof_iterations,
    get_roles,
    get_slot_start_ms,
    validate_full,
)
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id, sha256
from edgechain.crypto.vdf import VdfResult
from edgechain.errors import PeerError, ValidationError
from edgechain.orchestrator.registry import get_record
from edgechain.types import BlockHash, NodeId, PublicKey, SecretKey, Signature, Slot


@dataclass(frozen=True)
class EngineConfig:
    chain_id: str
    bootstrap_key: PublicKey
    """The bootstrap node's key, known to every node (paper §4 step 1); signs genesis."""
    address: str
    labels: tuple[str, ...] = ()
    ticket: bytes = b""
    """Admission ticket from the network admin (empty on an open-admission chain)."""
    genesis_template: ChainParams | None = None
    """Bootstrap node only: the parameters of the genesis it will create."""
    genesis_delay_ms: int = 3_000
    proof_scale: int = 1
    future_tolerance_ms: int = 500
    sync_limit: int = 256
    max_orphans: int = 1_024
    max_block_items: int = 256
    inclusion_retry_ms: int = 8_000
    send_reports: bool = True
    report_interval_slots: int = 4
    """Report every this many slots (each node at its own phase): the chain state keeps
    every node's latest report, so blocks need only carry the new ones (§3.2)."""


@dataclass(frozen=True)
class LocalUsage:
    """This node's measured resource use (from ``runtime/`` monitoring or the simulator)."""

    cpu_bp: int = 0
    ram_bp: int = 0
    disk_bp: int = 0
    rtt_us: int = 0
    apps: tuple[AppUsage, ...] = ()


@dataclass
class ProducerDuty:
    slot: Slot
    parent: BlockHash
    roles: Roles
    committee_ids: Mapping[NodeId, int]
    candidate: Block | None = None
    candidate_hash: BlockHash | None = None
    claimed: dict[int, list[Signature]] = field(default_factory=dict)
    """Votes as received, by committee index; verified together when aggregating."""
    done: bool = False


@dataclass
class EngineStats:
    blocks_accepted: int = 0
    skip_blocks_accepted: int = 0
    blocks_produced: int = 0
    skip_blocks_assembled: int = 0
    votes_sent: int = 0
    skip_votes_sent: int = 0
    reorgs: int = 0
    peer_errors: Counter[str] = field(default_factory=Counter)


class ConsensusEngine:
    """One node's consensus state machine."""

    def __init__(
        self,
        sk: SecretKey,
        config: EngineConfig,
        *,
        genesis: Genesis | None = None,
        genesis_signature: Signature | None = None,
        memo: Memo | None = None,
    ) -> None:
        self.sk = sk
        self.pk = bls.sk_to_pk(sk)
        self.node_id = compute_node_id(self.pk)
        self.config = config
        self.memo = memo or Memo(randomness=sha256(b"edgechain/batch", sk.to_bytes(32, "big")))
        self.stats = EngineStats()
        self.local_usage = LocalUsage()
        self.mode = ValidationMode(check_attestation=True, proof_scale=config.proof_scale)
        self.candidate_mode = ValidationMode(
            check_attestation=False, proof_scale=config.proof_scale
        )
        self.own_request = make_inclusion_request(sk, config.address, config.labels, config.ticket)
        self.genesis: Genesis | None = None
        self.genesis_msg: GenesisMsg | None = None
        self.params: ChainParams | None = None
        self.fork: ForkChoice | None = None
        self.head: BlockHash | None = None
        self.states: dict[BlockHash, BlockState] = {}
        self.blocks: dict[BlockHash, AnyBlock] = {}
        self.orphans: dict[BlockHash, list[tuple[AnyBlock, BlockHash, NodeId | None]]] = {}
        self.orphan_count = 0
        self.held: list[tuple[AnyBlock, BlockHash, NodeId | None]] = []
        self.sync_requested: dict[BlockHash, int] = {}
        self.pending_inclusions: dict[bytes, InclusionRequest] = {}
        self.pending_exits: dict[NodeId, ExitRequest] = {}
        self.commands = CommandPool(config.chain_id, 0, self.memo.signatures)
        self.report_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.unverified_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.forward_buffer: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.forwarded: set[Slot] = set()
        self.last_reported_slot = 0
        self.duty: ProducerDuty | None = None
        self.voted: dict[Slot, tuple[BlockHash, NodeId]] = {}
        self.leaving = False
        self.skip_voted: set[Slot] = set()
        self.skip_votes: dict[BlockHash, dict[int, Signature]] = {}
        self.last_inclusion_sent_ms: int | None = None
        if genesis is not None:
            self._adopt_genesis(genesis, genesis_signature or EMPTY_SIGNATURE)

    # --- queries -----------------------------------------------------------------------

    def get_head_state(self) -> BlockState | None:
        return self.states[self.head] if self.head is not None else None

    def is_validator(self) -> bool:
        state = self.get_head_state()
        return state is not None and self.node_id in state.validators

    def get_chain(self, upto: BlockHash | None = None) -> list[BlockHash]:
        """Hashes from genesis (exclusive) to ``upto`` (default: head), oldest first."""
        if self.fork is None or self.head is None:
            return []
        tip = upto or self.head
        chain = [tip, *self.fork.get_ancestors(tip)]
        chain.reverse()
        return chain[1:]

    # --- inputs ------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> Output:
        out = Output()
        if self.params is None:
            self._pre_genesis_tick(now_ms, out)
        else:
            self._release_held(now_ms, out)
            self._retry_sync(now_ms, out)
            self._regossip_inclusion(now_ms, out)
            slot = get_current_slot(self.params, now_ms)
            if slot >= 1:
                self._do_duties(slot, now_ms, out)
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def on_message(self, msg: Message, sender: NodeId | None, now_ms: int) -> Output:
        """Handle one peer message. A peer's bad input is counted, never raised."""
        out = Output()
        try:
            self._dispatch(msg, sender, now_ms, out)
        except PeerError as exc:
            self.stats.peer_errors[exc.reason] += 1
            out.events.append(PeerRejected(exc.reason, sender))
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def is_vdf_wanted(self, request: VdfRequest, now_ms: int) -> bool:
        """Whether ``request``'s result would still become a candidate.

        No longer once the slot's candidate deadline passed, a candidate went out, or the
        head moved off the challenge (a candidate on a stale parent gets no votes); the
        caller may then stop the evaluation.
        """
        duty = self.duty
        params = self.params
        return (
            params is not None
            and duty is not None
            and duty.slot == request.slot
            and duty.parent == request.challenge
            and self.head == request.challenge
            and duty.candidate is None
            and now_ms < get_candidate_deadline_ms(params, duty.slot)
        )

    def on_vdf_result(self, request: VdfRequest, result: VdfResult, now_ms: int) -> Output:
        out = Output()
        duty = self.duty
        if duty is not None and self.is_vdf_wanted(request, now_ms):
            self._send_candidate(duty, result, now_ms, out)
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def set_local_usage(self, usage: LocalUsage) -> None:
        self.local_usage = usage

    def submit_command(self, cmd: SignedCommand, now_ms: int) -> tuple[bytes, Output]:
        """API: check a signed command against the head state in full (it must apply),
        remember it until a block carries it, gossip it; returns its hash. A refused
        command raises its ValidationError (``CommandReason``), which is the caller's
        answer and is counted like a peer's."""
        try:
            digest = self._add_command(cmd, now_ms, check_applies=True)
        except PeerError as exc:
            self.stats.peer_errors[exc.reason] += 1
            raise
        out = Output(messages=[Outgoing(CommandMsg(cmd), Route.GOSSIP)])
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return digest, out

    def _add_command(self, cmd: SignedCommand, now_ms: int, *, check_applies: bool) -> bytes:
        state = self.get_head_state()
        params = self.params
        if state is None or params is None:
            raise ValidationError("no_chain", "no genesis yet")
        slot = get_current_slot(params, now_ms)
        return self.commands.add(cmd, state, slot, check_applies=check_applies)

    def request_exit(self, now_ms: int) -> Output:
        out = Output()
        if self.params is not None:
            req = make_exit_request(self.sk, get_current_slot(self.params, now_ms))
            self.pending_exits[req.node] = req
            self.leaving = True
            out.messages.append(Outgoing(ExitMsg(req), Route.GOSSIP))
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    # --- dispatch ----------------------------------------------------------------------

    def _dispatch(self, msg: Message, sender: NodeId | None, now: int, out: Output) -> None:
        if isinstance(msg, GenesisMsg):
            self._on_genesis(msg, out)
            return
        if isinstance(msg, InclusionMsg):
            self._on_inclusion(msg.request)
            return
        if self.params is None:
            # Before genesis only blocks matter: they tell us a chain exists; fetch it.
            if isinstance(msg, BlockMsg) and sender is not None:
                self._request_sync(self.memo.get_block_hash(msg.block), sender, now, out)
            elif isinstance(msg, SyncResponseMsg) and msg.genesis is not None:
                self._on_genesis(msg.genesis, out)
                self._on_sync_response(msg, sender, now, out)
            return
        if isinstance(msg, BlockMsg):
            self._on_block(msg.block, self.memo.get_block_hash(msg.block), sender, now, out)
        elif isinstance(msg, CandidateMsg):
            self._on_candidate(msg.block, sender, now, out)
        elif isinstance(msg, VoteMsg):
            self._on_vote(msg, now, out)
        elif isinstance(msg, SkipVoteMsg):
            self._on_skip_vote(msg, sender, now, out)
        elif isinstance(msg, ReportMsg):
            self._on_reports(msg.reports, now, out)
        elif isinstance(msg, ExitMsg):
            self._on_exit(msg.request)
        elif isinstance(msg, CommandMsg):
            # Refused and counted unless its signer may issue it (on_message counts it).
            self._add_command(msg.command, now, check_applies=False)
        elif isinstance(msg, SyncRequestMsg):
            self._on_sync_request(msg, sender, out)
        elif isinstance(msg, SyncResponseMsg):
            self._on_sync_response(msg, sender, now, out)

    # --- genesis (paper §4 steps 6-11) -------------------------------------------------

    def _pre_genesis_tick(self, now: int, out: Output) -> None:
        template = self.config.genesis_template
        if template is None:
            self._regossip_inclusion(now, out)
            return
        self.pending_inclusions.setdefault(bytes(self.pk), self.own_request)
        if len(self.pending_inclusions) < template.committee_size + 1:
            return
        # Round the start up to a whole second so logs line up across nodes.
        start = (now + self.config.genesis_delay_ms + 999) // 1000 * 1000
        params = dataclasses.replace(template, genesis_time_ms=start)
        inclusions = tuple(sorted(self.pending_inclusions.values(), key=lambda r: r.public_key))
        genesis = Genesis(params, inclusions, now)
        signature = bls.sign(self.sk, compute_genesis_hash(genesis))
        self._adopt_genesis(genesis, signature)
        assert self.genesis_msg is not None
        out.messages.append(Outgoing(self.genesis_msg, Route.GOSSIP))
        out.events.append(GenesisCreated(compute_genesis_hash(genesis)))

    def _on_genesis(self, msg: GenesisMsg, out: Output) -> None:
        if self.genesis is not None:
            return
        genesis_hash = self._get_genesis_hash(msg.genesis)
        if msg.genesis.params.chain_id != self.config.chain_id:
            raise PeerError("foreign_genesis", msg.genesis.params.chain_id)
        if not bls.verify(self.config.bootstrap_key, genesis_hash, msg.signature):
            raise PeerError("bad_genesis_signature")
        self.memo.get(("genesis-valid", genesis_hash), lambda: validate_genesis(msg.genesis))
        self._adopt_genesis(msg.genesis, msg.signature)
        out.events.append(GenesisCreated(genesis_hash))

    def _get_genesis_hash(self, genesis: Genesis) -> BlockHash:
        # Keyed by identity and holding the object, like Memo.get_block_hash.
        return self.memo.get(
            ("genesis-hash", id(genesis)), lambda: (genesis, compute_genesis_hash(genesis))
        )[1]

    def _adopt_genesis(self, genesis: Genesis, signature: Signature) -> None:
        genesis_hash = self._get_genesis_hash(genesis)
        self.genesis = genesis
        self.genesis_msg = GenesisMsg(genesis, signature)
        self.params = genesis.params
        self.commands.committee_size = genesis.params.committee_size
        self.fork = ForkChoice(genesis_hash)
        self.head = genesis_hash
        self.states[genesis_hash] = self.memo.get(
            ("state", genesis_hash), lambda: compute_genesis_state(genesis)
        )
        self.pending_inclusions.clear()

    def _on_inclusion(self, req: InclusionRequest) -> None:
        key = bytes(req.public_key)
        known = self.pending_inclusions.get(key)
        if known is not None and known.nonce >= req.nonce:
            return
        if self.params is None:
            template = self.config.genesis_template
            if template is None:
                return  # only the bootstrap node gathers requests before genesis
            params = template
        else:
            params = self.params
            state = self.get_head_state()
            if state is not None and compute_node_id(req.public_key) in state.validators:
                return
        self.memo.get(
            ("inclusion-valid", req),
            lambda: validate_inclusion(req, params, self.memo.signatures),
        )
        self.pending_inclusions[key] = req

    def _regossip_inclusion(self, now: int, out: Output) -> None:
        """A node outside the validator set keeps asking to join (paper §4 step 7)."""
        if self.leaving or self.is_validator():
            return
        last = self.last_inclusion_sent_ms
        if last is not None and now - last < self.config.inclusion_retry_ms:
            return
        self.last_inclusion_sent_ms = now
        state = self.get_head_state()
        if state is not None and self.own_request.nonce < state.slot:
            # Excluded (or never admitted) since our last request: ask anew, so gossip
            # carries it as a new message rather than a duplicate of the old one.
            config = self.config
            self.own_request = make_inclusion_request(
                self.sk, config.address, config.labels, config.ticket, nonce=state.slot
            )
        self.pending_inclusions[bytes(self.pk)] = self.own_request
        out.messages.append(Outgoing(InclusionMsg(self.own_request), Route.GOSSIP))

    def _on_exit(self, req: ExitRequest) -> None:
        state = self.get_head_state()
        assert state is not None
        validate_exit(req, state.validators, Slot(2**62))
        self.pending_exits.setdefault(req.node, req)

    # --- slot duties -------------------------------------------------------------------

    def _do_duties(self, slot: Slot, now: int, out: Output) -> None:
        params = self.params
        head = self.get_head_state()
        assert params is not None and head is not None
        self._maybe_send_report(slot, now, out)
        self._maybe_forward_reports(now, out)
        duty = self.duty
        if (
            duty is not None
            and not duty.done
            and duty.candidate is not None
            and now >= get_candidate_deadline_ms(params, duty.slot)
        ):
            self._finalize(duty, now, out)
        if head.slot >= slot or not self.is_validator():
            return
        roles = get_roles(self.memo, head, slot, params.committee_size)
        deadline = get_candidate_deadline_ms(params, slot)
        if roles.producer == self.pk and now < deadline:
            self._start_production(slot, head, roles, out)
        if now >= deadline and slot not in self.voted and slot not in self.skip_voted:
            index = roles.committee_index(self.pk)
            if index is not None:
                self._send_skip_vote(slot, head, roles, index, now, out)

    def _start_production(self, slot: Slot, head: BlockState, roles: Roles, out: Output) -> None:
        duty = self.duty
        if (
            duty is not None
            and duty.slot == slot
            and (duty.candidate is not None or duty.parent == head.block_hash)
        ):
            return  # never two candidates for one slot; the VDF is already running
        committee_ids = self._get_committee_ids(head, slot, roles)
        self.duty = ProducerDuty(slot, head.block_hash, roles, committee_ids)
        iterations = get_proof_iterations(head.difficulty, self.config.proof_scale)
        out.vdf_requests.append(VdfRequest(head.block_hash, head.difficulty, iterations, slot))

    def _send_candidate(self, duty: ProducerDuty, result: VdfResult, now: int, out: Output) -> None:
        params = self.params
        parent = self.states[duty.parent]
        assert params is not None
        block = self._build_candidate(params, parent, duty.slot, result, now)
        duty.candidate = block
        duty.candidate_hash = compute_block_hash(block)
        self.memo.put_block_hash(block, duty.candidate_hash)
        self.stats.blocks_produced += 1
        out.messages.append(Outgoing(CandidateMsg(block), Route.DIRECT, tuple(duty.committee_ids)))

    def _build_candidate(
        self, params: ChainParams, parent: BlockState, slot: Slot, result: VdfResult, now: int
    ) -> Block:
        """Algorithm 3, producer case: the candidate block built on ``parent``."""
        limit = self.config.max_block_items
        reports = tuple(
            sorted(
                (r for r in self.report_pool.get(slot, {}).values() if r.node in parent.validators),
                key=lambda r: r.node,
            )
        )
        inclusions = tuple(
            r
            for r in sorted(self.pending_inclusions.values(), key=lambda r: r.public_key)
            if compute_node_id(r.public_key) not in parent.validators
            and not is_banned(parent.authority, compute_node_id(r.public_key))
        )[:limit]
        exits = tuple(
            e
            for node, e in sorted(self.pending_exits.items())
            if node in parent.validators and e.slot <= slot
        )[:limit]
        timestamp = max(now, get_slot_start_ms(params, slot))
        difficulty = compute_next_difficulty(
            params, parent.difficulty, timestamp - get_slot_start_ms(params, slot)
        )
        unsigned = Block(
            parent=parent.block_hash,
            slot=slot,
            epoch=slot // params.epoch_length,
            producer=self.node_id,
            timestamp_ms=timestamp,
            difficulty=difficulty,
            vdf_output=result.output,
            vdf_proof=result.proof,
            reports=reports,
            plan=get_plan(self.memo, params, parent, slot),
            inclusions=inclusions,
            exits=exits,
            commands=(),
            producer_signature=EMPTY_SIGNATURE,
            signers=b"",
            aggregate_signature=EMPTY_SIGNATURE,
        )
        commands = self.commands.select(parent, unsigned, limit)
        return sign_as_producer(dataclasses.replace(unsigned, commands=commands), self.sk)

    def _get_valid_votes(self, duty: ProducerDuty) -> dict[int, Signature]:
        """One verified signature per voter: a single FastAggregateVerify over the first
        claim of each voter, and one-by-one checks only if that fails."""
        assert duty.candidate_hash is not None
        message = compute_vote_message(duty.candidate_hash)
        committee = duty.roles.committee
        first = {i: sigs[0] for i, sigs in sorted(duty.claimed.items())}
        if first and bls.fast_aggregate_verify(
            [committee[i] for i in first], message, bls.aggregate(list(first.values()))
        ):
            return first
        valid: dict[int, Signature] = {}
        for index, sigs in sorted(duty.claimed.items()):
            for sig in sigs:
                if self.memo.signatures.verify(committee[index], message, sig):
                    valid[index] = sig
                    break
                self.stats.peer_errors["bad_vote_signature"] += 1
        return valid

    def _finalize(self, duty: ProducerDuty, now: int, out: Output) -> None:
        """Aggregate the votes; with a committee majority, gossip the block."""
        duty.done = True
        candidate = duty.candidate
        committee_size = len(duty.roles.committee)
        if candidate is None or not is_majority(len(duty.claimed), committee_size):
            return
        votes = self._get_valid_votes(duty)
        if not is_majority(len(votes), committee_size):
            return
        block = attach_attestation(candidate, committee_size, votes)
        assert duty.candidate_hash is not None
        self.memo.put_block_hash(block, duty.candidate_hash)
        self._publish_block(block, duty.candidate_hash, now, out)

    def _publish_block(self, block: AnyBlock, block_hash: BlockHash, now: int, out: Output) -> None:
        """Accept our new block (or assembled skip block), then send it out.

        Gossip reaches everyone in a few hops, but each hop waits for a busy node to
        read its socket. The next slot's producer and committee cannot start without
        this block, and whoever made it already knows them (the roles follow from its
        seed), so they get it directly first: one hop on the slot's critical path.
        """
        self._on_block(block, block_hash, None, now, out)
        state = self.states.get(block_hash)
        params = self.params
        if state is not None and params is not None and len(state.validators):
            slot = Slot(block.slot + 1)
            roles = get_roles(self.memo, state, slot, params.committee_size)
            duties = [compute_node_id(roles.producer), *self._get_committee_ids(state, slot, roles)]
            to = tuple(node for node in dict.fromkeys(duties) if node != self.node_id)
            if to:
                out.messages.append(Outgoing(BlockMsg(block), Route.DIRECT, to))
        out.messages.append(Outgoing(BlockMsg(block), Route.GOSSIP))

    def _send_skip_vote(
        self, slot: Slot, head: BlockState, roles: Roles, index: int, now: int, out: Output
    ) -> None:
        """Algorithm 3, committee case: no valid candidate by 2/3 of the slot."""
        self.skip_voted.add(slot)
        excluded = self._get_skip_exclusion(head, roles)
        skip_hash = self._get_skip_hash(head.block_hash, slot, excluded)
        vote = SkipVoteMsg(
            head.block_hash, slot, excluded, self.node_id, sign_vote(skip_hash, self.sk)
        )
        self.stats.skip_votes_sent += 1
        members = self._get_committee_ids(head, slot, roles)
        others = tuple(node for node in members if node != self.node_id)
        out.messages.append(Outgoing(vote, Route.DIRECT, others))
        self._collect_skip_vote(vote, roles, index, skip_hash, now, out)

    def _get_committee_ids(
        self, parent: BlockState, slot: Slot, roles: Roles
    ) -> Mapping[NodeId, int]:
        """Committee members' node ids to their bitfield index, in committee order."""
        return self.memo.get(
            ("committee-ids", parent.block_hash, slot),
            lambda: {compute_node_id(pk): i for i, pk in enumerate(roles.committee)},
        )

    def _get_skip_exclusion(self, parent: BlockState, roles: Roles) -> NodeId:
        params = self.params
        assert params is not None
        producer = compute_node_id(roles.producer)
        return compute_skip_exclusion(parent.validators, producer, params.committee_size)

    def _get_skip_hash(self, parent: BlockHash, slot: Slot, excluded: NodeId) -> BlockHash:
        return self.memo.get(
            ("skip-hash", parent, slot, excluded),
            lambda: compute_block_hash(SkipBlock(parent, slot, excluded, b"", EMPTY_SIGNATURE)),
        )

    # --- candidate, votes, skip votes --------------------------------------------------

    def _on_candidate(self, block: Block, sender: NodeId | None, now: int, out: Output) -> None:
        params = self.params
        assert params is not None
        block_hash = self.memo.get_block_hash(block)
        parent = self.states.get(block.parent)
        if parent is None:
            if sender is not None:
                self._request_sync(block.parent, sender, now, out)
            return
        roles = get_roles(self.memo, parent, block.slot, params.committee_size)
        index = roles.committee_index(self.pk)
        if index is None:
            raise PeerError("candidate_to_non_member")
        if block.slot != get_current_slot(params, now):
            return  # stale or early: a vote now would be for the wrong slot
        if now >= get_candidate_deadline_ms(params, block.slot):
            return  # too late: we have turned (or will turn) to the skip block
        previous = self.voted.get(block.slot)
        if previous is not None or block.slot in self.skip_voted:
            # One vote per slot. Two candidates from *one* producer is equivocation; from
            # two producers it is two heads (the producer of each branch is elected).
            if previous is not None and previous[0] != block_hash and previous[1] == block.producer:
                raise PeerError("equivocating_producer")
            return
        validate_full(self.memo, params, parent, block, block_hash, self.candidate_mode)
        self.voted[block.slot] = (block_hash, block.producer)
        self.stats.votes_sent += 1
        vote = VoteMsg(block_hash, block.slot, self.node_id, sign_vote(block_hash, self.sk))
        out.messages.append(Outgoing(vote, Route.DIRECT, (block.producer,)))

    def _on_vote(self, vote: VoteMsg, now: int, out: Output) -> None:
        duty = self.duty
        if duty is None or duty.candidate_hash != vote.block_hash or duty.done:
            return  # a late vote for a slot already closed
        index = duty.committee_ids.get(vote.voter)
        if index is None:
            raise PeerError("vote_outside_committee")
        claims = duty.claimed.setdefault(index, [])
        if vote.signature in claims:
            return
        if len(claims) >= 2:
            raise PeerError("double_vote")
        # BLS is deterministic: a second, different signature from one voter means one
        # of the two is forged; both are kept and the aggregation step sorts them out.
        claims.append(vote.signature)
        if len(claims) > 1:
            self.stats.peer_errors["double_vote"] += 1
        if len(duty.claimed) == len(duty.roles.committee):
            self._finalize(duty, now, out)

    def _on_skip_vote(
        self, vote: SkipVoteMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        params = self.params
        assert params is not None
        parent = self.states.get(vote.parent)
        if parent is None:
            if sender is not None:
                self._request_sync(vote.parent, sender, now, out)
            return
        roles = get_roles(self.memo, parent, vote.slot, params.committee_size)
        if vote.excluded != self._get_skip_exclusion(parent, roles):
            raise PeerError("skip_vote_wrong_producer")
        voter_index = self._get_committee_ids(parent, vote.slot, roles).get(vote.voter)
        if voter_index is None:
            raise PeerError("vote_outside_committee")
        skip_hash = self._get_skip_hash(vote.parent, vote.slot, vote.excluded)
        if not self.memo.signatures.verify(
            roles.committee[voter_index], compute_vote_message(skip_hash), vote.signature
        ):
            raise PeerError("bad_vote_signature")
        self._collect_skip_vote(vote, roles, voter_index, skip_hash, now, out)

    def _collect_skip_vote(
        self,
        vote: SkipVoteMsg,
        roles: Roles,
        index: int,
        skip_hash: BlockHash,
        now: int,
        out: Output,
    ) -> None:
        votes = self.skip_votes.setdefault(skip_hash, {})
        known = votes.get(index)
        if known is not None and known != vote.signature:
            raise PeerError("double_vote")
        votes[index] = vote.signature
        if skip_hash in self.states or not is_majority(len(votes), len(roles.committee)):
            return
        unsigned = SkipBlock(vote.parent, vote.slot, vote.excluded, b"", EMPTY_SIGNATURE)
        skip = attach_attestation(unsigned, len(roles.committee), votes)
        self.memo.put_block_hash(skip, skip_hash)
        self.stats.skip_blocks_assembled += 1
        self._publish_block(skip, skip_hash, now, out)

    # --- blocks, fork choice, sync -----------------------------------------------------

    def _on_block(
        self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None, now: int, out: Output
    ) -> None:
        queue: deque[tuple[AnyBlock, BlockHash, NodeId | None]] = deque(
            [(block, block_hash, sender)]
        )
        while queue:
            item, item_hash, item_sender = queue.popleft()
            if self._accept_block(item, item_hash, item_sender, now, out):
                waiting = self.orphans.pop(item_hash, [])
                self.orphan_count -= len(waiting)
                queue.extend(waiting)

    def _accept_block(
        self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None, now: int, out: Output
    ) -> bool:
        params, fork = self.params, self.fork
        assert params is not None and fork is not None
        if block_hash in self.states:
            return False
        if get_slot_start_ms(params, block.slot) > now + self.config.future_tolerance_ms:
            # From the future beyond tolerance: held, not accepted (DESIGN.md "Time").
            if len(self.held) < self.config.max_orphans:
                self.held.append((block, block_hash, sender))
            return False
        parent = self.states.get(block.parent)
        if parent is None:
            self._add_orphan(block, block_hash, sender)
            if sender is not None:
                self._request_sync(block.parent, sender, now, out)
            return False
        signers = validate_full(self.memo, params, parent, block, block_hash, self.mode)
        state = self.memo.get(
            ("state", block_hash),
            lambda: apply_block(parent, block, block_hash, params.committee_size),
        )
        self.states[block_hash] = state
        self.blocks[block_hash] = block
        fork.add(block_hash, block.parent, block.slot, signers)
        is_skip = isinstance(block, SkipBlock)
        if is_skip:
            self.stats.skip_blocks_accepted += 1
        else:
            self.stats.blocks_accepted += 1
        out.events.append(BlockAccepted(block_hash, block.slot, is_skip, signers))
        self._update_head(now, out)
        return True

    def _add_orphan(self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None) -> None:
        if self.orphan_count >= self.config.max_orphans:
            return
        waiting = self.orphans.setdefault(block.parent, [])
        if all(h != block_hash for _, h, _ in waiting):
            waiting.append((block, block_hash, sender))
            self.orphan_count += 1

    def _update_head(self, now: int, out: Output) -> None:
        fork = self.fork
        assert fork is not None and self.head is not None
        new_head = fork.get_head()
        if new_head == self.head:
            return
        reorg = fork.compute_reorg(self.head, new_head)
        if reorg.revert:
            self.stats.reorgs += 1
        out.events.append(HeadChanged(self.head, new_head, reorg.revert, reorg.apply))
        self.head = new_head
        for applied in reorg.apply:
            self._emit_migration_orders(applied, out)
        self._prune_pending()
        params = self.params
        assert params is not None
        self._maybe_send_report(get_current_slot(params, now), now, out)

    def _emit_migration_orders(self, block_hash: BlockHash, out: Output) -> None:
        block = self.blocks.get(block_hash)
        if not isinstance(block, Block) or not block.plan:
            return
        registry = self.states[block_hash].registry
        for entry in block.plan:
            record = get_record(registry, entry.app)
            involved = entry.destination == self.node_id or (
                entry.action is PlanAction.MIGRATE and entry.origin == self.node_id
            )
            if involved:
                out.events.append(
                    MigrationOrder(block_hash, block.slot, entry, record.spec if record else None)
                )

    def _prune_pending(self) -> None:
        """Drop pending items a block on the head chain already carries."""
        state = self.get_head_state()
        assert state is not None
        for key in [
            k for k in self.pending_inclusions if compute_node_id(PublicKey(k)) in state.validators
        ]:
            del self.pending_inclusions[key]
        for node in [n for n in self.pending_exits if n not in state.validators]:
            del self.pending_exits[node]
        params = self.params
        assert params is not None
        self.commands.prune(state, Slot(state.slot))
        for table in (self.report_pool, self.forward_buffer, self.unverified_pool):
            for old in [s for s in table if s < state.slot]:
                del table[old]
        self.forwarded = {s for s in self.forwarded if s >= state.slot}
        for old in [s for s in self.voted if s < state.slot - 64]:
            del self.voted[old]
        self.skip_voted = {s for s in self.skip_voted if s >= state.slot - 64}

    def _release_held(self, now: int, out: Output) -> None:
        params = self.params
        assert params is not None
        due = [
            item
            for item in self.held
            if get_slot_start_ms(params, item[0].slot) <= now + self.config.future_tolerance_ms
        ]
        if not due:
            return
        self.held = [item for item in self.held if item not in due]
        for block, block_hash, sender in due:
            try:
                self._on_block(block, block_hash, sender, now, out)
            except PeerError as exc:
                self.stats.peer_errors[exc.reason] += 1
                out.events.append(PeerRejected(exc.reason, sender))

    def _retry_sync(self, now: int, out: Output) -> None:
        """Ask again for missing parents (a sync request or its answer may be lost)."""
        for missing, waiting in self.orphans.items():
            peers = [sender for _, _, sender in waiting if sender is not None]
            if peers:
                self._request_sync(missing, peers[0], now, out)

    def _request_sync(self, want: BlockHash, peer: NodeId, now: int, out: Output) -> None:
        last = self.sync_requested.get(want)
        if last is not None and now - last < 1_000:
            return
        self.sync_requested[want] = now
        if len(self.sync_requested) > 4 * self.config.max_orphans:
            self.sync_requested = {want: now}
        out.messages.append(
            Outgoing(SyncRequestMsg(want, self.config.sync_limit), Route.DIRECT, (peer,))
        )

    def _on_sync_request(self, msg: SyncRequestMsg, sender: NodeId | None, out: Output) -> None:
        if sender is None or self.fork is None:
            return
        if msg.want not in self.blocks:
            if self.genesis_msg is not None and msg.want == self.fork.get_root():
                out.messages.append(
                    Outgoing(SyncResponseMsg((), self.genesis_msg), Route.DIRECT, (sender,))
                )
            return
        limit = max(1, min(msg.limit, self.config.sync_limit))
        chain = [msg.want, *self.fork.get_ancestors(msg.want)][:limit]
        blocks = tuple(self.blocks[h] for h in reversed(chain) if h in self.blocks)
        reaches_genesis = bool(blocks) and blocks[0].parent == self.fork.get_root()
        genesis = self.genesis_msg if reaches_genesis else None
        out.messages.append(Outgoing(SyncResponseMsg(blocks, genesis), Route.DIRECT, (sender,)))

    def _on_sync_response(
        self, msg: SyncResponseMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        if self.params is None:
            return
        for block in msg.blocks[: self.config.sync_limit]:
            self._on_block(block, self.memo.get_block_hash(block), sender, now, out)

    # --- resource reports (§3.2 overlay) -----------------------------------------------

    def _get_clustering(self, state: BlockState) -> Clustering:
        params = self.params
        assert params is not None
        return self.memo.get(
            ("clusters", state.block_hash),
            lambda: compute_clusters(
                state.validators.get_node_ids(), state.seed, params.nodes_per_cluster
            ),
        )

    def _get_forward_time(self, slot: int) -> int:
        params = self.params
        assert params is not None
        half_vdf = params.slot_duration_ms * params.vdf_target_bp // 20_000
        return get_slot_start_ms(params, slot) + half_vdf

    def _maybe_send_report(self, slot: Slot, now: int, out: Output) -> None:
        """Report for the next producer: once the head for ``t - 1`` is known, or at 2/3
        of slot ``t - 1`` at the latest."""
        params = self.params
        head = self.get_head_state()
        assert params is not None and head is not None
        target = Slot(slot + 1 if now >= get_candidate_deadline_ms(params, slot) else slot)
        target = Slot(max(target, head.slot + 1))
        if (
            not self.config.send_reports
            or target <= self.last_reported_slot
            or self.node_id not in head.validators
        ):
            return
        self.last_reported_slot = target
        interval = max(1, self.config.report_interval_slots)
        if (target + self.node_id[0]) % interval:
            return
        u = self.local_usage
        report = make_report(
            self.sk, target, timestamp_ms=now, cpu_bp=u.cpu_bp, ram_bp=u.ram_bp,
            disk_bp=u.disk_bp, rtt_us=u.rtt_us, apps=u.apps,
        )  # fmt: skip
        self.memo.signatures.add_own(self.pk, compute_report_signing_root(report), report.signature)
        representative = self._get_clustering(head).get_representative(self.node_id)
        if representative == self.node_id:
            self._route_report(report, head)
            self._verify_pool(head)
        else:
            out.messages.append(Outgoing(ReportMsg((report,)), Route.DIRECT, (representative,)))

    def _route_report(self, report: ResourceReport, head: BlockState) -> None:
        params = self.params
        assert params is not None
        if head.slot < report.slot:
            roles = get_roles(self.memo, head, report.slot, params.committee_size)
            if roles.producer == self.pk:
                self.unverified_pool.setdefault(report.slot, {})[report.node] = report
                return
        self.forward_buffer.setdefault(report.slot, {})[report.node] = report

    def _on_reports(self, reports: Iterable[ResourceReport], now: int, out: Output) -> None:
        params = self.params
        head = self.get_head_state()
        assert params is not None and head is not None
        current = get_current_slot(params, now)
        for report in reports:
            # A report from outside our validator set may be honest (a node we have just
            # seen excluded, or one not yet included on our branch): dropped, not blamed.
            if report.node in head.validators and current <= report.slot <= current + 2:
                self._route_report(report, head)
        self._maybe_forward_reports(now, out)
        bad = self._verify_pool(head)
        if bad:
            raise PeerError("bad_report_signature", f"{bad} reports")

    def _verify_reports(self, head: BlockState, reports: list[ResourceReport]) -> list[bool]:
        """Batch-check signatures of reports from members of ``head``'s validator set."""
        items = []
        for report in reports:
            info = head.validators.get(report.node)
            assert info is not None, "callers keep only reports from validators"
            items.append((info.public_key, compute_report_signing_root(report), report.signature))
        return self.memo.signatures.verify_batch(items)

    def _verify_pool(self, head: BlockState) -> int:
        """Check the producer's newly pooled reports as one batch; drop bad ones."""
        bad = 0
        for slot, pool in self.unverified_pool.items():
            reports = [r for r in pool.values() if r.node in head.validators]
            for report, ok in zip(reports, self._verify_reports(head, reports), strict=True):
                if ok:
                    self.report_pool.setdefault(slot, {})[report.node] = report
                else:
                    bad += 1
        self.unverified_pool.clear()
        return bad

    def _maybe_forward_reports(self, now: int, out: Output) -> None:
        """Representative: batch the cluster's reports to the producer of their slot."""
        params = self.params
        head = self.get_head_state()
        assert params is not None and head is not None
        for slot, buffered in list(self.forward_buffer.items()):
            if not buffered or head.slot >= slot:
                continue
            cluster_size = (
                len(self._get_clustering(head).get_members(self.node_id))
                if (self.node_id in head.validators)
                else 0
            )
            complete = len(buffered) >= cluster_size > 0
            if not complete and now < self._get_forward_time(slot) and slot not in self.forwarded:
                continue
            roles = get_roles(self.memo, head, Slot(slot), params.committee_size)
            producer = compute_node_id(roles.producer)
            # A representative vouches for nothing, but forwards only what verifies.
            candidates = sorted(
                (r for r in buffered.values() if r.node in head.validators), key=lambda r: r.node
            )
            verdicts = self._verify_reports(head, candidates)
            if not all(verdicts):
                self.stats.peer_errors["bad_report_signature"] += verdicts.count(False)
            batch = tuple(r for r, ok in zip(candidates, verdicts, strict=True) if ok)
            self.forward_buffer[slot] = {}
            self.forwarded.add(Slot(slot))
            if producer == self.node_id:
                self.report_pool.setdefault(Slot(slot), {}).update((r.node, r) for r in batch)
            else:
                out.messages.append(Outgoing(ReportMsg(batch), Route.DIRECT, (producer,)))

    # --- timers ------------------------------------------------------------------------

    def _get_next_wakeup(self, now: int) -> int:
        params = self.params
        if params is None:
            retry = self.config.inclusion_retry_ms
            return now + min(retry, 500)
        slot = get_current_slot(params, now)
        candidates = []
        for s in (slot, slot + 1):
            candidates += [
                get_slot_start_ms(params, s),
                self._get_forward_time(s),
                get_candidate_deadline_ms(params, s),
            ]
        if self.orphans:
            candidates.append(now + 1_000)
        if self.held:
            candidates.append(
                min(get_slot_start_ms(params, b.slot) for b, _, _ in self.held)
                - self.config.future_tolerance_ms
            )
        if self.last_inclusion_sent_ms is not None and not self.is_validator():
            candidates.append(self.last_inclusion_sent_ms + self.config.inclusion_retry_ms)
        upcoming = [t for t in candidates if t > now]
        return min(upcoming) if upcoming else now + params.slot_duration_ms
