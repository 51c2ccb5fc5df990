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

:class:`ConsensusEngine` coordinates one part per job, all sharing an
:class:`~edgechain.consensus.context.EngineContext` (identity, config, memo, counters
and the chain held): ``joining`` (genesis, inclusion and exit requests), ``producer``,
``committee`` (votes and skip votes), ``reports`` (the report relay), ``sync`` (orphans,
held blocks, sync requests) and ``acceptance`` (accepting blocks, head updates,
publishing). It routes inputs to them, runs the slot's duties in order and computes
the next wake-up.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgechain.chain.assembly import EMPTY_SIGNATURE
from edgechain.chain.model import (
    AnyBlock,
    Block,
    ChainParams,
    Genesis,
    SignedCommand,
)
from edgechain.consensus.acceptance import BlockAcceptance
from edgechain.consensus.addresses import AddressRecords
from edgechain.consensus.checkpoint_sync import (
    CATCH_UP_SLOTS,
    CheckpointSync,
    on_forward_request,
    on_state_request,
)
from edgechain.consensus.command_pool import CommandPool
from edgechain.consensus.committee import (
    Committee,
    get_committee_ids,
    get_skip_exclusion,
    get_skip_hash,
)
from edgechain.consensus.context import EngineConfig, EngineContext, EngineStats, LocalUsage
from edgechain.consensus.engine_view import EngineView
from edgechain.consensus.joining import Joining
from edgechain.consensus.messages import (
    AddressMsg,
    BlockAccepted,
    BlockMsg,
    CandidateMsg,
    CommandMsg,
    ExitMsg,
    ForwardSyncRequestMsg,
    ForwardSyncResponseMsg,
    GenesisMsg,
    InclusionMsg,
    Message,
    Outgoing,
    Output,
    PeerRejected,
    ReportMsg,
    Route,
    SkipVoteMsg,
    StateRequestMsg,
    StateResponseMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VdfRequest,
    VoteMsg,
)
from edgechain.consensus.producer import Producer, ProducerDuty, build_candidate
from edgechain.consensus.pruning import ChainPruner
from edgechain.consensus.reports import ReportRelay
from edgechain.consensus.roles import Role, Roles
from edgechain.consensus.state import (
    BlockState,
    Memo,
    get_candidate_deadline_ms,
    get_current_slot,
    get_roles,
)
from edgechain.consensus.sync import Sync
from edgechain.consensus.wakeups import get_slot_deadlines
from edgechain.crypto.hashing import sha256
from edgechain.crypto.vdf import VdfResult
from edgechain.errors import PeerError, RejectReason, ValidationError
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import BlockHash, NodeId, SecretKey, Signature, Slot

__all__ = [
    "ConsensusEngine",
    "EngineConfig",
    "EngineStats",
    "LocalUsage",
    "ProducerDuty",
]


def get_message_component(msg: Message) -> Component:
    """What handling ``msg`` is charged to (``telemetry/cpu.py``)."""
    if isinstance(msg, BlockMsg | SyncResponseMsg | ForwardSyncResponseMsg | StateResponseMsg):
        return Component.BLOCK_OTHER
    if isinstance(msg, CandidateMsg | VoteMsg | SkipVoteMsg):
        return Component.VOTES
    if isinstance(msg, ReportMsg):
        return Component.REPORTS
    return Component.CONSENSUS


class ConsensusEngine(EngineView):
    """One node's consensus state machine: a coordinator of the parts above (their
    state reads as its attributes through :class:`EngineView`)."""

    def __init__(
        self,
        sk: SecretKey,
        config: EngineConfig,
        *,
        genesis: Genesis | None = None,
        genesis_signature: Signature | None = None,
        memo: Memo | None = None,
    ) -> None:
        memo = memo or Memo(randomness=sha256(b"edgechain/batch", sk.to_bytes(32, "big")))
        self.ctx = ctx = EngineContext(sk, config, memo)
        self.sk, self.pk, self.node_id = ctx.sk, ctx.pk, ctx.node_id
        self.config, self.memo, self.stats = config, memo, ctx.stats
        self.commands = CommandPool(config.chain_id, 0, memo.signatures)
        self.addresses = AddressRecords(ctx)
        self.reports = ReportRelay(ctx)
        self.sync = Sync(ctx, self._on_block)
        self.joining = Joining(ctx, self._adopt_genesis, self.sync.has_orphan_after)
        self.pruner = ChainPruner(ctx)
        self.acceptance = BlockAcceptance(ctx, self.sync, self.pruner, self._on_head_changed)
        self.producer = Producer(ctx, self._publish_block)
        self.committee = Committee(ctx, self.sync.request_sync, self._publish_block)
        self.checkpoint = CheckpointSync(ctx, self._on_block, self.install_anchor)
        self.acceptance.is_backward_sync_paused = self.checkpoint.is_following
        if genesis is not None:
            self._adopt_genesis(genesis, genesis_signature or EMPTY_SIGNATURE)

    # --- inputs ------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> Output:
        out = Output()
        if self.params is None:
            self.joining.pre_genesis_tick(now_ms, out)
        else:
            self.sync.release_held(now_ms, out)
            self.checkpoint.on_tick(now_ms, out)
            self.checkpoint.maybe_start(self.sync.get_ahead(), now_ms, out)
            if not self.checkpoint.is_following():
                # One catch-up path at a time: a follow replaces the backward walk.
                self.sync.retry_sync(now_ms, out)
            self.joining.regossip_inclusion(now_ms, out)
            slot = get_current_slot(self.params, now_ms)
            head = self.get_head_state()
            if head is not None:
                self.addresses.maybe_announce(head, slot, now_ms, out)
            if slot >= 1:
                self._do_duties(slot, now_ms, out)
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def on_message(self, msg: Message, sender: NodeId | None, now_ms: int) -> Output:
        """Handle one peer message. A peer's bad input is counted, never raised."""
        out = Output()
        head = self.ctx.head
        try:
            self._dispatch(msg, sender, now_ms, out)
        except PeerError as exc:
            self.stats.peer_errors[exc.reason] += 1
            out.events.append(PeerRejected(exc.reason, sender))
        # A new head may have made a duty due that no deadline announces (consensus/
        # wakeups.py): the next pass runs now.
        moved = self.ctx.head != head
        out.next_wakeup_ms = now_ms if moved else self._get_next_wakeup(now_ms)
        return out

    def on_stored_block(self, block: AnyBlock, block_hash: BlockHash, now_ms: int) -> Output:
        """A block from this node's own store, at a restart (parents first).

        Only accepted blocks are ever stored, so the VDF, plan and signatures are not
        checked again: a restart costs the state transitions, not the whole chain's
        validation (issue 13). The hash is recomputed: bytes that do not hash to the key
        they were stored under are a damaged store, and go through full validation.
        """
        out = Output()
        actual = self.memo.get_block_hash(block)
        trusted = actual == block_hash
        if not trusted:
            # Judged by what the bytes are, under their own hash (validation results
            # are memoised by hash).
            self.stats.peer_errors[RejectReason.STORED_BLOCK_HASH_MISMATCH] += 1
        if self.params is not None:
            try:
                self.acceptance.accept(block, actual, None, now_ms, out, trusted=trusted)
            except PeerError as exc:
                self.stats.peer_errors[exc.reason] += 1
                out.events.append(PeerRejected(exc.reason, None))
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def is_vdf_wanted(self, request: VdfRequest, now_ms: int) -> bool:
        """Whether ``request``'s result would still become a candidate.

        No longer once the slot's candidate deadline passed, a candidate went out, or the
        head moved off the challenge (a candidate on a stale parent gets no votes); the
        caller may then stop the evaluation.
        """
        return self.producer.is_vdf_wanted(request, now_ms)

    def on_vdf_result(self, request: VdfRequest, result: VdfResult, now_ms: int) -> Output:
        out = Output()
        duty = self.duty
        if duty is not None and self.is_vdf_wanted(request, now_ms):
            self._send_candidate(duty, result, now_ms, out)
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    def install_anchor(self, block: AnyBlock, block_hash: BlockHash, state: BlockState) -> None:
        """Continue from a state this node trusts: its own stored snapshot at a restart,
        or one checkpoint sync checked against its root."""
        self.ctx.install_anchor(block, block_hash, state)
        self.producer.duty = None
        self.pruner.on_anchor_installed(state)
        self.sync.drop_orphans_upto(state.slot)

    def set_local_usage(self, usage: LocalUsage) -> None:
        self.reports.local_usage = usage

    def get_local_usage(self) -> LocalUsage:
        """What the next report will carry."""
        return self.reports.local_usage

    def submit_command(self, cmd: SignedCommand, now_ms: int) -> tuple[bytes, Output]:
        """API: check a signed command against the head state in full (it must apply),
        remember it until a block carries it, gossip it; returns its hash. A refused
        command raises its ValidationError (``RejectReason.COMMAND_*``), which is the caller's
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
            raise ValidationError(RejectReason.NO_CHAIN, "no genesis yet")
        slot = get_current_slot(params, now_ms)
        return self.commands.add(cmd, state, slot, check_applies=check_applies)

    def request_exit(self, now_ms: int) -> Output:
        out = Output()
        if self.params is not None:
            self.joining.request_exit(get_current_slot(self.params, now_ms), out)
        out.next_wakeup_ms = self._get_next_wakeup(now_ms)
        return out

    # --- dispatch ----------------------------------------------------------------------

    def _dispatch(self, msg: Message, sender: NodeId | None, now: int, out: Output) -> None:
        with cpu_span(get_message_component(msg)):
            self._dispatch_message(msg, sender, now, out)

    def _dispatch_message(self, msg: Message, sender: NodeId | None, now: int, out: Output) -> None:
        if isinstance(msg, BlockMsg | CandidateMsg) and msg.block_hash is not None:
            self.memo.put_block_hash(msg.block, msg.block_hash)
        elif isinstance(msg, SyncResponseMsg | ForwardSyncResponseMsg):
            self.memo.put_received_hashes(msg.blocks, msg.hashes)
        if isinstance(msg, GenesisMsg):
            self.joining.on_genesis(msg, out)
            return
        if isinstance(msg, InclusionMsg):
            self.joining.on_inclusion(msg.request)
            return
        if self.params is None:
            # Before genesis only blocks matter: they tell us a chain exists; fetch it.
            if isinstance(msg, BlockMsg) and sender is not None:
                self.sync.request_chain(self.memo.get_block_hash(msg.block), sender, now, out)
            elif isinstance(msg, SyncResponseMsg) and msg.genesis is not None:
                self.joining.on_genesis(msg.genesis, out)
                if msg.blocks and msg.blocks[-1].slot >= CATCH_UP_SLOTS:
                    # A chain this long is followed to a checkpoint (``_on_block``, issue
                    # 13 item 4), not replayed block by block from the genesis: only the
                    # newest block, which shows how far ahead the chain is.
                    msg = SyncResponseMsg(msg.blocks[-1:], None)
                self.sync.on_sync_response(msg, sender, now, out)
            return
        if isinstance(msg, BlockMsg):
            self._on_block(msg.block, self.memo.get_block_hash(msg.block), sender, now, out)
        elif isinstance(msg, CandidateMsg):
            self.committee.on_candidate(msg.block, sender, now, out)
        elif isinstance(msg, VoteMsg):
            self.producer.on_vote(msg, now, out)
        elif isinstance(msg, SkipVoteMsg):
            self.committee.on_skip_vote(msg, sender, now, out)
        elif isinstance(msg, ReportMsg):
            self.reports.on_reports(msg.reports, now, out)
        elif isinstance(msg, ExitMsg):
            self.joining.on_exit(msg.request)
        elif isinstance(msg, AddressMsg):
            head = self.get_head_state()
            if head is not None:
                self.addresses.on_record(msg.record, head)
        elif isinstance(msg, CommandMsg):
            # Refused and counted unless its signer may issue it (on_message counts it).
            self._add_command(msg.command, now, check_applies=False)
        elif isinstance(msg, SyncRequestMsg):
            self.sync.on_sync_request(msg, sender, now, out)
        elif isinstance(msg, SyncResponseMsg):
            self.sync.on_sync_response(msg, sender, now, out)
        elif isinstance(msg, ForwardSyncRequestMsg):
            on_forward_request(self.ctx, msg, sender, out)
        elif isinstance(msg, ForwardSyncResponseMsg):
            self.checkpoint.on_forward_response(msg, sender, now, out)
        elif isinstance(msg, StateRequestMsg):
            on_state_request(self.ctx, msg, sender, out)
        elif isinstance(msg, StateResponseMsg):
            self.checkpoint.on_state_response(msg, sender, now, out)

    # --- slot duties -------------------------------------------------------------------

    def _do_duties(self, slot: Slot, now: int, out: Output) -> None:
        params = self.params
        head = self.get_head_state()
        assert params is not None and head is not None
        with cpu_span(Component.REPORTS):
            self.reports.maybe_send_report(slot, now, out)
            self.reports.maybe_forward_reports(now, out)
        self.producer.maybe_finalize(now, out)
        # ``head`` stays the head this tick began with, even if the block just
        # finalized moved it: the next tick acts on the new one.
        if head.slot >= slot or not self.is_validator():
            return
        roles = get_roles(self.memo, head, slot, params.committee_size)
        if roles.producer == self.pk and now < get_candidate_deadline_ms(params, slot):
            self.producer.start(slot, head, roles, out)
        self.committee.maybe_skip_vote(slot, head, roles, now, out)

    # --- wiring between the parts (also the hooks sim/byzantine.py overrides) ----------

    def _adopt_genesis(self, genesis: Genesis, signature: Signature) -> None:
        self.ctx.adopt_genesis(genesis, signature)
        self.commands.committee_size = genesis.params.committee_size
        self.commands.down_after_slots = genesis.params.down_after_slots
        self.joining.on_genesis_adopted()

    def _send_candidate(self, duty: ProducerDuty, result: VdfResult, now: int, out: Output) -> None:
        params = self.params
        parent = self.states[duty.parent]
        assert params is not None
        block = self._build_candidate(params, parent, duty.slot, result, now)
        self.producer.send_candidate(duty, block, out)

    def _build_candidate(
        self, params: ChainParams, parent: BlockState, slot: Slot, result: VdfResult, now: int
    ) -> Block:
        return build_candidate(
            self.ctx, params, parent, slot, result, now,
            reports=self.reports.report_pool.get(slot, {}),
            inclusions=self.joining.pending_inclusions.values(),
            exits=self.joining.pending_exits,
            addresses=self.addresses.pending,
            commands=self.commands,
        )  # fmt: skip

    def _publish_block(self, block: AnyBlock, block_hash: BlockHash, now: int, out: Output) -> None:
        self.acceptance.publish(block, block_hash, now, out)

    def _on_block(
        self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None, now: int, out: Output
    ) -> None:
        if sender is not None and block.parent not in self.ctx.states:
            # Far ahead: follow to a checkpoint rather than walk back block by block
            # (acceptance then does not ask for the parent).
            self.checkpoint.maybe_start([(block.slot, sender)], now, out)
        first = len(out.events)
        self.acceptance.on_block(block, block_hash, sender, now, out)
        for event in out.events[first:]:
            if isinstance(event, BlockAccepted):
                self.reports.check_own_reports(event.block, event.block_hash, out)

    def _on_head_changed(self, now: int, out: Output) -> None:
        """After the head moved: drop what the head chain carries, hand report pools to
        the producers the new head elects, maybe report (or fall back), forward the
        clusters now complete."""
        state = self.get_head_state()
        params = self.params
        assert state is not None and params is not None
        self.joining.prune(state)
        self.addresses.prune(state)
        self.commands.prune(state, Slot(state.slot))
        self.reports.prune(state)
        self.reports.hand_over_pools(now, out)
        self.committee.prune(state)
        if self.pruner.on_head_changed(out):
            # Blocks at or below finality are refused before they can become orphans
            # (acceptance.py), so only an advance leaves orphans to drop.
            self.sync.drop_orphans_upto(self.pruner.finalized_slot)
        self.reports.maybe_send_report(get_current_slot(params, now), now, out)
        # A representative that got its members' reports before the block they were
        # made on counted its cluster on the older head; on the new one it may be
        # complete now. Without this the batch waited for the next tick, often the
        # forward time (a 14 s tail at 16 s slots, 1000 simulated nodes).
        self.reports.maybe_forward_reports(now, out)

    def _get_committee_ids(
        self, parent: BlockState, slot: Slot, roles: Roles
    ) -> Mapping[NodeId, int]:
        return get_committee_ids(self.memo, parent, slot, roles)

    def _get_skip_exclusion(self, parent: BlockState, roles: Roles) -> NodeId:
        params = self.params
        assert params is not None
        return get_skip_exclusion(params, parent, roles)

    def _get_skip_hash(self, parent: BlockHash, slot: Slot, excluded: NodeId) -> BlockHash:
        return get_skip_hash(self.memo, parent, slot, excluded)

    # --- timers ------------------------------------------------------------------------

    def get_next_role(self, now: int) -> Role:
        """Our role in the next slot once the current slot's block is our head (that
        block's state elects the next slot's roles); otherwise none yet."""
        params = self.params
        head = self.get_head_state()
        if params is None or head is None or not self.is_validator():
            return Role.NONE
        slot = get_current_slot(params, now)
        if head.slot != slot:
            return Role.NONE
        return get_roles(self.memo, head, Slot(slot + 1), params.committee_size).get_role(self.pk)

    def _get_next_wakeup(self, now: int) -> int:
        params = self.params
        if params is None:
            retry = self.config.inclusion_retry_ms
            return now + min(retry, 500)
        slot = get_current_slot(params, now)
        head = self.get_head_state()
        head_slot = head.slot if head is not None else -1
        duty = self.producer.duty
        producer_open = duty is not None and duty.slot == slot and not duty.done
        candidates = get_slot_deadlines(
            params, slot, head_slot, self.get_next_role(now), producer_open=producer_open
        )
        candidates += self.sync.get_wakeups(now)
        candidates += self.checkpoint.get_wakeups(now)
        candidates += self.reports.get_wakeups()
        retry_at = self.joining.get_retry_time()
        if retry_at is not None:
            candidates.append(retry_at)
        upcoming = [t for t in candidates if t > now]
        return min(upcoming) if upcoming else now + params.slot_duration_ms
