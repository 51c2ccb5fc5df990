"""Who may change what runs: the admin key, the operator keys and their sequence numbers.

DESIGN.md, "Who may change what runs": the admin key is fixed at genesis; it grants and
revokes operator keys on chain, may exclude a node and may drain one, and revokes
enrollment tokens (``chain/enrollment.py``). A node may drain
and undrain itself, signing with its own key: that is how it leaves on purpose (issue
16; ``node/leaving.py``). Every app command
is signed by an operator (or the admin). Like the validator set, this is consensus state rebuilt by
applying blocks in order; it is checked against the *parent's* state, so a key revoked
in block B is refused from B's child on, and a key granted in B may sign from B's child
on.

Replay protection is a per-signer sequence number: a command is valid only if its
``seq`` exceeds the signer's last applied one (ARCHITECTURE.md, "Signed commands",
argues this against an expiry slot). The last sequence number of a revoked key is kept,
so re-granting it does not reopen its old commands.

Representation: sorted tuples of bytes (binary search), so the state is immutable,
cheap to share between blocks and ordered by bytes only (Rule 2).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from edgechain.chain.enrollment import TOKEN_ID_SIZE
from edgechain.chain.model import APP_COMMANDS, ChainParams, CommandKind, SignedCommand
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, NodeId, PublicKey


@dataclass(frozen=True)
class Authority:
    """The admin key, the active operators, revoked keys, every signer's last sequence
    number and the nodes the admin excluded for good; tuples sorted by bytes."""

    admin_key: bytes = b""
    operators: tuple[bytes, ...] = ()
    revoked: tuple[bytes, ...] = ()
    sequences: tuple[tuple[bytes, int], ...] = ()
    banned: tuple[NodeId, ...] = ()
    draining: tuple[NodeId, ...] = ()
    """Validators being drained (``DRAIN_NODE``, by the admin or by themselves): no new
    apps, apps moved away. A node's exit ends its drain."""
    revoked_enrollments: tuple[bytes, ...] = ()
    """Ids of enrollment tokens the admin revoked (``REVOKE_ENROLLMENT``), sorted."""


def compute_genesis_authority(params: ChainParams) -> Authority:
    return Authority(admin_key=params.admin_key)


def _contains(values: tuple[bytes, ...], key: bytes) -> bool:
    pos = bisect.bisect_left(values, key)
    return pos < len(values) and values[pos] == key


def is_admin(auth: Authority, key: bytes) -> bool:
    return bool(auth.admin_key) and key == auth.admin_key


def is_operator(auth: Authority, key: bytes) -> bool:
    """May ``key`` sign app commands? The admin may, and every granted operator."""
    return is_admin(auth, key) or _contains(auth.operators, key)


def is_revoked(auth: Authority, key: bytes) -> bool:
    return _contains(auth.revoked, key)


def is_banned(auth: Authority, node: bytes) -> bool:
    return _contains(auth.banned, node)


def is_enrollment_revoked(auth: Authority, token_id: bytes) -> bool:
    return _contains(auth.revoked_enrollments, token_id)


def is_draining(auth: Authority, node: bytes) -> bool:
    return _contains(auth.draining, node)


def get_last_seq(auth: Authority, key: bytes) -> int:
    """The signer's last applied sequence number (0 if it never signed a command)."""
    pos = bisect.bisect_left(auth.sequences, (key, -1))
    if pos < len(auth.sequences) and auth.sequences[pos][0] == key:
        return auth.sequences[pos][1]
    return 0


NODE_COMMANDS = frozenset(
    {
        CommandKind.MOVE,
        CommandKind.EXCLUDE_NODE,
        CommandKind.DRAIN_NODE,
        CommandKind.UNDRAIN_NODE,
    }
)
"""The kinds whose ``node`` field names a validator."""


def check_command_shape(cmd: SignedCommand) -> None:
    """Each kind carries exactly its own fields (a self-contained check)."""
    kind = cmd.kind
    wants_app = kind in APP_COMMANDS and kind is not CommandKind.SUBMIT
    wants_spec = kind in (CommandKind.SUBMIT, CommandKind.UPDATE)
    wants_node = kind in NODE_COMMANDS
    key_size = (
        PUBLIC_KEY_SIZE
        if kind in (CommandKind.GRANT_OPERATOR, CommandKind.REVOKE_OPERATOR)
        else TOKEN_ID_SIZE
        if kind is CommandKind.REVOKE_ENROLLMENT
        else 0
    )
    if len(cmd.app) != (HASH_SIZE if wants_app else 0):
        raise ValidationError(RejectReason.COMMAND_MALFORMED, f"{kind.name}: app field")
    if (cmd.spec is not None) != wants_spec:
        raise ValidationError(RejectReason.COMMAND_MALFORMED, f"{kind.name}: spec field")
    if len(cmd.node) != (HASH_SIZE if wants_node else 0):
        raise ValidationError(RejectReason.COMMAND_MALFORMED, f"{kind.name}: node field")
    if len(cmd.key) != key_size:
        raise ValidationError(RejectReason.COMMAND_MALFORMED, f"{kind.name}: key field")
    if cmd.seq < 1:
        raise ValidationError(RejectReason.COMMAND_MALFORMED, "seq must be at least 1")


def check_command_signer(auth: Authority, cmd: SignedCommand, last_seq: int) -> None:
    """May the signer issue this command now? ``last_seq`` is the signer's last sequence
    number including earlier commands of the same block."""
    signer = bytes(cmd.signer)
    if cmd.kind not in APP_COMMANDS:
        if not is_admin(auth, signer) and not is_own_drain(cmd):
            raise ValidationError(RejectReason.COMMAND_NOT_ADMIN, cmd.kind.name)
    elif not is_operator(auth, signer):
        # The client shows the detail as it stands: say what to do about it.
        if is_revoked(auth, signer):
            raise ValidationError(
                RejectReason.COMMAND_REVOKED,
                f"key {signer.hex()[:16]} was revoked by the chain's admin",
            )
        raise ValidationError(
            RejectReason.COMMAND_UNKNOWN_SIGNER,
            f"key {signer.hex()[:16]} is not an operator of this chain (the admin grants "
            "one with `edgechain admin grant PUBKEY`)",
        )
    if cmd.seq <= last_seq:
        raise ValidationError(RejectReason.COMMAND_REPLAYED, f"seq {cmd.seq} <= {last_seq}")


def is_own_drain(cmd: SignedCommand) -> bool:
    """A DRAIN_NODE or UNDRAIN_NODE signed by the key of the node it names. The node id
    is the hash of that key, and the command still needs that node to be a validator,
    which it became with a proof of possession of the key (``validate_inclusion``)."""
    return cmd.kind in (CommandKind.DRAIN_NODE, CommandKind.UNDRAIN_NODE) and bytes(
        compute_node_id(PublicKey(cmd.signer))
    ) == bytes(cmd.node)


def end_drains(auth: Authority, exited: Iterable[bytes]) -> Authority:
    """``auth`` without the drains of nodes that exited (a rejoin starts undrained)."""
    gone = {bytes(n) for n in exited}
    if not gone or not any(bytes(n) in gone for n in auth.draining):
        return auth
    return replace(auth, draining=tuple(n for n in auth.draining if bytes(n) not in gone))


def _with(values: tuple[bytes, ...], key: bytes) -> tuple[bytes, ...]:
    return values if _contains(values, key) else tuple(sorted((*values, key)))


def _without(values: tuple[bytes, ...], key: bytes) -> tuple[bytes, ...]:
    return tuple(v for v in values if v != key)


def apply_commands_to_authority(auth: Authority, commands: Iterable[SignedCommand]) -> Authority:
    """The authority after a block's (already validated) commands: sequence numbers,
    grants, revocations and bans."""
    operators, revoked, banned = auth.operators, auth.revoked, tuple(map(bytes, auth.banned))
    draining = tuple(map(bytes, auth.draining))
    revoked_tokens = auth.revoked_enrollments
    seqs: dict[bytes, int] = {}
    for cmd in commands:
        seqs[bytes(cmd.signer)] = max(seqs.get(bytes(cmd.signer), 0), cmd.seq)
        if cmd.kind is CommandKind.GRANT_OPERATOR:
            operators, revoked = _with(operators, cmd.key), _without(revoked, cmd.key)
        elif cmd.kind is CommandKind.REVOKE_OPERATOR:
            operators, revoked = _without(operators, cmd.key), _with(revoked, cmd.key)
        elif cmd.kind is CommandKind.EXCLUDE_NODE:
            banned, draining = _with(banned, cmd.node), _without(draining, cmd.node)
        elif cmd.kind is CommandKind.DRAIN_NODE:
            draining = _with(draining, cmd.node)
        elif cmd.kind is CommandKind.UNDRAIN_NODE:
            draining = _without(draining, cmd.node)
        elif cmd.kind is CommandKind.REVOKE_ENROLLMENT:
            revoked_tokens = _with(revoked_tokens, cmd.key)
    if not seqs:
        return auth
    return Authority(
        admin_key=auth.admin_key,
        operators=operators,
        revoked=revoked,
        sequences=_merge_sequences(auth.sequences, seqs),
        banned=tuple(NodeId(n) for n in banned),
        draining=tuple(NodeId(n) for n in draining),
        revoked_enrollments=revoked_tokens,
    )


def _merge_sequences(
    known: tuple[tuple[bytes, int], ...], fresh: Mapping[bytes, int]
) -> tuple[tuple[bytes, int], ...]:
    merged = dict(known)
    for key, seq in fresh.items():
        merged[key] = max(merged.get(key, 0), seq)
    return tuple(sorted(merged.items()))
