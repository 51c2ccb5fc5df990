"""Sync, orphans and held blocks (§3.5).

A block whose parent is unknown waits as an orphan while its parent is requested from
the sender (retried from ``on_tick`` while orphans wait); a block from beyond
``future_tolerance_ms`` is held until its slot is near. This part also answers other
nodes' sync requests from the chain this node holds.
"""

from __future__ import annotations

from collections.abc import Callable

from edgechain.chain.model import AnyBlock
from edgechain.consensus.backoff import get_backoff_ms
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import (
    HEAD_WANT,
    ArchiveSyncWanted,
    Outgoing,
    Output,
    PeerRejected,
    Route,
    SyncRequestMsg,
    SyncResponseMsg,
)
from edgechain.consensus.state import get_slot_start_ms
from edgechain.errors import PeerError
from edgechain.types import BlockHash, NodeId, Slot

SYNC_ANSWER_INTERVAL_MS = 5_000
"""A sync request repeated by the same peer within this is not answered again."""

SYNC_RETRY_MS = 1_000
"""The wait before a missing block is asked for again, after the first request."""
MAX_SYNC_BACKOFF = 8
"""The longest wait between two requests for one missing block, in ``SYNC_RETRY_MS``."""
SYNC_FORK_MARGIN = 2
"""Blocks asked for beyond those our head says can be missing: a fork that short is
fetched in one answer."""


CHAIN_ASK = BlockHash(b"\xff" * 32)
"""The key under which ``Sync.request_chain`` keeps its retry time: not a block."""


def get_sync_retry_ms(attempts: int) -> int:
    """The wait after ``attempts`` requests for one block: 1 s, then doubling to 8 s.

    An answer is up to ``sync_limit`` blocks, which the asker decodes whole. On a
    loaded host (a 100-node testnet on 2 cores: round trips of 1-4 s) a 1 s retry
    brought two to four copies of each answer, and the copies' decoding was a
    joining node's largest cost after the signature checks; a lost request is still
    asked for again within seconds."""
    return get_backoff_ms(SYNC_RETRY_MS, attempts, MAX_SYNC_BACKOFF)


Pending = tuple[AnyBlock, BlockHash, NodeId | None]


def collect_ancestry(
    get_block: Callable[[BlockHash], AnyBlock | None], want: BlockHash, limit: int
) -> tuple[list[AnyBlock], BlockHash]:
    """Up to ``limit`` blocks ending at ``want``, oldest first, through ``get_block``
    (memory, a node's store, the simulator's record), and the parent of the oldest:
    where the walk stopped (``want`` itself when ``get_block`` has nothing)."""
    blocks: list[AnyBlock] = []
    current = want
    while len(blocks) < limit:
        block = get_block(current)
        if block is None:
            break
        blocks.append(block)
        current = block.parent
    blocks.reverse()
    return blocks, current


"""A block not accepted yet, its hash, and who sent it."""
OnBlock = Callable[[AnyBlock, BlockHash, NodeId | None, int, Output], None]


class Sync:
    """Orphans by missing parent, held future blocks, and sync requests sent."""

    def __init__(self, ctx: EngineContext, on_block: OnBlock) -> None:
        self.ctx = ctx
        self.on_block = on_block
        self.orphans: dict[BlockHash, list[Pending]] = {}
        """Orphans by the parent they wait for."""
        self.orphan_hashes: set[BlockHash] = set()
        """Every orphan's own hash: a parent that is one is not asked for (its own
        missing ancestor is), see ``is_missing_root``."""
        self.orphan_count = 0
        self.held: list[Pending] = []
        self.sync_requested: dict[BlockHash, tuple[int, int]] = {}
        """When each missing block was last asked for, and how many times it was
        (``get_sync_retry_ms``)."""
        self.served: dict[tuple[NodeId, BlockHash], int] = {}
        """When each (peer, wanted block) was last answered (``SYNC_ANSWER_INTERVAL_MS``)."""
        self.requests_ignored = 0

    # --- blocks that wait --------------------------------------------------------------

    def hold(self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None) -> None:
        """From the future beyond tolerance: held, not accepted (DESIGN.md "Time")."""
        if len(self.held) < self.ctx.config.max_orphans:
            self.held.append((block, block_hash, sender))

    def add_orphan(self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None) -> None:
        if self.orphan_count >= self.ctx.config.max_orphans:
            return
        waiting = self.orphans.setdefault(block.parent, [])
        if all(h != block_hash for _, h, _ in waiting):
            waiting.append((block, block_hash, sender))
            self.orphan_hashes.add(block_hash)
            self.orphan_count += 1

    def drop_orphans_upto(self, slot: int) -> None:
        """Forget orphans at or below the finalized ``slot``: they can no longer join
        the chain (``consensus/pruning.py``), and they would hold their places in
        ``max_orphans`` and be asked about every second."""
        for parent in list(self.orphans):
            waiting = [p for p in self.orphans[parent] if p[0].slot > slot]
            dropped = len(self.orphans[parent]) - len(waiting)
            if not dropped:
                continue
            self.orphan_hashes.difference_update(
                h for b, h, _ in self.orphans[parent] if b.slot <= slot
            )
            self.orphan_count -= dropped
            if waiting:
                self.orphans[parent] = waiting
            else:
                del self.orphans[parent]

    def is_missing_root(self, parent: BlockHash) -> bool:
        """Whether ``parent`` must be asked for: not an orphan we hold. A node catching
        up gets each new block by gossip, an orphan whose parent is the previous new
        orphan; asking each sender for each of those parents made every peer answer
        ``sync_limit`` blocks every slot (and every retry), the oldest missing
        ancestor being the only one worth asking for."""
        return parent not in self.orphan_hashes

    def has_orphan_after(self, slot: Slot) -> bool:
        """Is a block of a later slot than ``slot`` waiting for its ancestors? (Then the
        network is ahead of a head at ``slot``: this node is behind.)"""
        return any(
            block.slot > slot for waiting in self.orphans.values() for block, _, _ in waiting
        )

    def get_ahead(self) -> list[tuple[Slot, NodeId]]:
        """The slot and sender of each waiting orphan (checkpoint sync's trigger)."""
        return [
            (block.slot, sender)
            for waiting in self.orphans.values()
            for block, _, sender in waiting
            if sender is not None
        ]

    def take_orphans(self, parent: BlockHash) -> list[Pending]:
        """The orphans waiting for ``parent``, which has just been accepted."""
        waiting = self.orphans.pop(parent, [])
        self.orphan_count -= len(waiting)
        self.orphan_hashes.difference_update(h for _, h, _ in waiting)
        return waiting

    def release_held(self, now: int, out: Output) -> None:
        params = self.ctx.params
        assert params is not None
        tolerance = self.ctx.config.future_tolerance_ms
        due = [
            item for item in self.held if get_slot_start_ms(params, item[0].slot) <= now + tolerance
        ]
        if not due:
            return
        self.held = [item for item in self.held if item not in due]
        for block, block_hash, sender in due:
            try:
                self.on_block(block, block_hash, sender, now, out)
            except PeerError as exc:
                self.ctx.stats.peer_errors[exc.reason] += 1
                out.events.append(PeerRejected(exc.reason, sender))

    def get_wakeups(self, now: int) -> list[int]:
        """When waiting blocks need another look: a sync retry, a held block's slot."""
        params = self.ctx.params
        assert params is not None
        times = []
        if self.orphans:
            times.append(now + 1_000)
        if self.held:
            times.append(
                min(get_slot_start_ms(params, b.slot) for b, _, _ in self.held)
                - self.ctx.config.future_tolerance_ms
            )
        return times

    # --- sync requests -----------------------------------------------------------------

    def retry_sync(self, now: int, out: Output) -> None:
        """Ask again for missing parents (a sync request or its answer may be lost)."""
        for missing, waiting in self.orphans.items():
            if not self.is_missing_root(missing):
                continue
            peers = [sender for _, _, sender in waiting if sender is not None]
            if peers and self.is_request_due(missing, now):
                lowest = min(block.slot for block, _, _ in waiting)
                self.request_sync(missing, self.get_retry_peer(missing, peers), now, out, lowest)

    def get_retry_peer(self, want: BlockHash, senders: list[NodeId]) -> NodeId:
        """Whom to ask for ``want`` this time: the senders of the blocks that wait for
        it in turn, then the validators of our head (from a place that depends on our
        id, so that joiners do not all ask the same one).

        Every retry went to the first sender: on a loaded host one slow peer (RTT
        there reached tens of seconds) held a joiner back for minutes, and it answers a
        repeat only once per ``SYNC_ANSWER_INTERVAL_MS``. A joiner of a 100-node testnet
        accepted blocks in bursts 15-40 s apart and took about 200 s to catch up."""
        candidates = list(dict.fromkeys(senders))
        head = self.ctx.get_head_state()
        if head is not None:
            others = {*candidates, self.ctx.node_id}
            validators = [n for n in head.validators.get_node_ids() if n not in others]
            if validators:
                start = int.from_bytes(self.ctx.node_id[:4], "big") % len(validators)
                candidates += validators[start:] + validators[:start]
        _, attempts = self.sync_requested.get(want, (None, 0))
        return candidates[attempts % len(candidates)]

    def is_request_due(self, want: BlockHash, now: int) -> bool:
        """Whether ``want`` may be asked for now (never yet, or ``get_sync_retry_ms``
        after the last request)."""
        last, attempts = self.sync_requested.get(want, (None, 0))
        return last is None or now - last >= get_sync_retry_ms(attempts)

    def request_sync(
        self, want: BlockHash, peer: NodeId, now: int, out: Output, below_slot: int | None
    ) -> None:
        """Ask ``peer`` for ``want`` and the ancestors we may lack (``get_sync_limit``)
        when it is time (``get_sync_retry_ms``); ``below_slot``: the slot of the block
        (or vote) that waits for ``want``, None when we hold no chain to count from."""
        if not self.record_request(want, now):
            return
        out.messages.append(
            Outgoing(SyncRequestMsg(want, self.get_sync_limit(below_slot)), Route.DIRECT, (peer,))
        )

    def record_request(self, key: BlockHash, now: int) -> bool:
        """If a request under ``key`` is due (``is_request_due``), count it as sent now
        and return True; otherwise False."""
        if not self.is_request_due(key, now):
            return False
        _, attempts = self.sync_requested.get(key, (None, 0))
        self.sync_requested[key] = (now, attempts + 1)
        if len(self.sync_requested) > 4 * self.ctx.config.max_orphans:
            self.sync_requested = {key: (now, attempts + 1)}
        return True

    def request_chain(self, want: BlockHash, peer: NodeId, now: int, out: Output) -> None:
        """Before the genesis: a gossiped block ``want`` says a chain exists; ask its
        sender for ``want`` and its ancestors down to the genesis (``sync_limit``).

        One ask per ``get_sync_retry_ms`` whatever block prompts it. Each new block is
        a new ``want``, so a joiner used to ask once a slot while it waited, each answer
        up to ``sync_limit`` blocks (1-3 MB) decoded whole; in a 100-node join on 2
        cores a joiner waited 10-60 s between receiving the genesis and adopting it, and
        any answer that arrived meanwhile cost it a whole decode more."""
        if not self.record_request(CHAIN_ASK, now):
            return
        request = SyncRequestMsg(want, self.ctx.config.sync_limit)
        out.messages.append(Outgoing(request, Route.DIRECT, (peer,)))

    def get_sync_limit(self, below_slot: int | None) -> int:
        """How many blocks to ask for under a block at ``below_slot`` whose parent we lack.

        An answer is ``want`` and its ancestors up to the limit, and the asker decodes
        it whole. Asking for ``sync_limit`` (256) every time a node missed one block
        made a 100-node testnet's joining nodes receive each block about 14 times,
        most of them blocks they held. Above our head, at most the slots between it
        and ``below_slot`` can be missing on our chain (plus ``SYNC_FORK_MARGIN`` for a
        short fork; a deeper one is asked for again from the oldest block received,
        which is then at or below our head); at or below it, everything above the
        finalized root can be."""
        ctx = self.ctx
        head = ctx.get_head_state()
        if below_slot is None or head is None:
            return ctx.config.sync_limit
        if below_slot > head.slot + 1:
            wanted = below_slot - head.slot - 1 + SYNC_FORK_MARGIN
        else:
            wanted = below_slot - self._get_root_slot()
        return max(1, min(ctx.config.sync_limit, wanted))

    def _get_root_slot(self) -> int:
        """The slot of the fork-choice root (genesis, or the finalized block)."""
        fork = self.ctx.fork
        root = self.ctx.states.get(fork.get_root()) if fork is not None else None
        return root.slot if root is not None else 0

    def is_answered_recently(self, sender: NodeId, want: BlockHash, now: int) -> bool:
        """A peer that waits for ancestors asks again every second (``retry_sync``), and
        a node catching up needs several seconds to validate one answer of
        ``sync_limit`` blocks: answering each repeat re-sent megabytes that the peer
        was still busy with (measured: a bootstrap node serving a joiner grew to 350 MB
        and stopped answering). One answer per peer and block per interval."""
        last = self.served.get((sender, want))
        if last is not None and now - last < SYNC_ANSWER_INTERVAL_MS:
            self.requests_ignored += 1
            return True
        if len(self.served) >= 4 * self.ctx.config.max_orphans:
            self.served = {
                k: t for k, t in self.served.items() if now - t < SYNC_ANSWER_INTERVAL_MS
            }
        self.served[(sender, want)] = now
        return False

    def on_sync_request(
        self, msg: SyncRequestMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        ctx = self.ctx
        fork = ctx.fork
        if sender is None or fork is None:
            return
        if msg.want != HEAD_WANT and self.is_answered_recently(sender, msg.want, now):
            return
        if msg.want == HEAD_WANT and ctx.head is not None and ctx.head in ctx.blocks:
            # A node without the genesis asks for it and our head: it syncs the head's
            # ancestors from us like any orphan's (joining.ask_seeds_for_chain).
            head_block = ctx.blocks[ctx.head]
            out.messages.append(
                Outgoing(SyncResponseMsg((head_block,), ctx.genesis_msg), Route.DIRECT, (sender,))
            )
            return
        if msg.want == HEAD_WANT and ctx.genesis_msg is not None:
            out.messages.append(
                Outgoing(SyncResponseMsg((), ctx.genesis_msg), Route.DIRECT, (sender,))
            )
            return
        genesis_hash = ctx.get_genesis_hash()
        limit = max(1, min(msg.limit, ctx.config.sync_limit))
        if msg.want not in ctx.blocks:
            if ctx.genesis_msg is not None and msg.want == genesis_hash:
                out.messages.append(
                    Outgoing(SyncResponseMsg((), ctx.genesis_msg), Route.DIRECT, (sender,))
                )
            elif ctx.genesis_msg is not None:
                # Pruned from memory (or never seen): the node's store may have it.
                out.events.append(ArchiveSyncWanted(msg.want, limit, sender))
            return
        # Parent links, not the fork tree: the retained window below the finalized root
        # is served too.
        blocks, current = collect_ancestry(ctx.blocks.get, msg.want, limit)
        if len(blocks) < limit and current != genesis_hash:
            # Ran out of memory before the limit: the store continues from here.
            out.events.append(ArchiveSyncWanted(current, limit - len(blocks), sender))
        reaches_genesis = current == genesis_hash
        genesis = ctx.genesis_msg if reaches_genesis else None
        out.messages.append(
            Outgoing(SyncResponseMsg(tuple(blocks), genesis), Route.DIRECT, (sender,))
        )

    def on_sync_response(
        self, msg: SyncResponseMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        if self.ctx.params is None:
            return
        for block in msg.blocks[: self.ctx.config.sync_limit]:
            self.on_block(block, self.ctx.memo.get_block_hash(block), sender, now, out)
