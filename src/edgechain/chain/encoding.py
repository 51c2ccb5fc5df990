"""Canonical byte encoding of every chain object, and the hashes defined on it.

The encoding is specified field by field (``tests/vectors/README.md`` and
``ARCHITECTURE.md``), never pickle or dict order, so a second implementation can
reproduce every hash (``tests/vectors/blocks.json``). Primitives:

* ``u8``/``u16``/``u32``/``u64``: unsigned big-endian integers of that width.
* ``fixed(n)``: exactly n raw bytes (hashes 32, node ids 32, keys 48, signatures 96;
  Ed25519 report keys 32 and report signatures 64).
* ``bytes``: u32 length, then the bytes (each field has its own maximum).
* ``str``: u16 length, then strict UTF-8 (each field has its own maximum).
* ``list<T>``: u32 count, then the items (each list has its own maximum count).
* ``bool``: one byte, 0 or 1; enums: one byte from the enum's values.

A block's encoding is ``u8 tag || header || producer_signature || signers ||
aggregate_signature``; the block hash is ``SHA-256("edgechain/block/v10" || tag ||
header)`` with the tag ``v10`` (``FORMAT_VERSION``), so the signatures that attest to a
block are not part of its identity.
Decoding is strict: trailing bytes, out-of-range enums, non-minimal booleans, counts
beyond a limit or beyond what the remaining bytes could hold are all DecodeErrors.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from edgechain.chain.enrollment import TOKEN_SIZE
from edgechain.chain.model import (
    AddressRecord,
    AnyBlock,
    AppPolicy,
    AppSpec,
    AppUsage,
    Block,
    ChainParams,
    Checkpoint,
    CommandKind,
    Coordinate,
    ExitRequest,
    FinalityVote,
    Genesis,
    InclusionRequest,
    PlanAction,
    PlanEntry,
    ResourceReport,
    RuntimeKind,
    SignedCommand,
    SkipBlock,
)
from edgechain.errors import DecodeError, RejectReason
from edgechain.types import (
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    REPORT_KEY_SIZE,
    REPORT_SIGNATURE_SIZE,
    SIGNATURE_SIZE,
    AppId,
    BlockHash,
    NodeId,
    PublicKey,
    ReportSignature,
    Signature,
    Slot,
)

T = TypeVar("T")

FORMAT_VERSION = 12
"""Version of the block format; it names the block hash's domain tag. 2: signed
commands replace bare app specs, app ids no longer hash the spec, params carry
``open_admission``. 3: plan actions RECOVER and REPLICA, specs carry
``replica_interval_slots``, params carry ``down_after_slots``, commands DRAIN_NODE and
UNDRAIN_NODE. 4: reports carry ``pressure_bp``, app usages ``state_bytes``. 5: specs
end with ``cpu_limit_millicores``, ``memory_limit_bytes``, ``state_limit_bytes`` and
``run_as_root``. 6: a report's signature is a 64-byte Ed25519 signature, an inclusion
request carries the 32-byte ``report_key`` after its proof of possession. 7: a report
ends with its optional finality vote (``chain/finality.py``); ``epoch_length`` defaults
to 8 slots. 8: a block carries ``state_root`` (32 bytes after the VDF proof), the
root of its parent's state (``consensus/state_codec.py``). 9: a block ends its header
with ``addresses``, validators' signed new addresses (``AddressRecord``). 10: an
inclusion request's ``ticket`` may hold a 136-byte enrollment token
(``chain/enrollment.py``); command kind REVOKE_ENROLLMENT, whose ``key`` is 32 bytes.
11: a report carries the node's network ``coordinate`` (two i32, after ``pressure_bp``),
which the chain state keeps per validator (``cluster/vivaldi.py``). 12: same bytes, new
VDF: the discriminant comes from the epoch's group hash and the evaluation starts from
a form hashed from the parent hash (``crypto/vdf.py``), not from the generator."""

TAG_BLOCK = 1
TAG_SKIP_BLOCK = 2
TAG_GENESIS = 3

VDF_FORM_SIZE = 100
"""chiavdf's compressed class-group form for a 1024-bit discriminant."""


class Limits:
    """Hard upper bounds on what a peer may send; each is a DecodeError beyond it."""

    MAX_BLOCK_BYTES = 8 * 1024 * 1024
    MAX_REPORTS = 4096
    MAX_APPS_PER_REPORT = 256
    MAX_PLAN_ENTRIES = 4096
    MAX_INCLUSIONS = 1024
    MAX_EXITS = 1024
    MAX_ADDRESSES = 1024
    MAX_COMMANDS = 1024
    MAX_LABELS = 16
    MAX_COMMAND_ARGS = 64
    MAX_SHORT_STR = 256
    MAX_ARG_STR = 4096
    MAX_SIGNER_BYTES = 128
    """A committee of at most 1024 members."""
    MAX_TICKET_BYTES = TOKEN_SIZE
    """A key ticket (a signature) or an enrollment token (``chain/enrollment.py``)."""


# --- writing -------------------------------------------------------------------------


class Writer:
    """Appends primitives to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf += struct.pack(">B", v)

    def u16(self, v: int) -> None:
        self.buf += struct.pack(">H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack(">I", v)

    def u64(self, v: int) -> None:
        self.buf += struct.pack(">Q", v)

    def i32(self, v: int) -> None:
        self.buf += struct.pack(">i", v)

    def fixed(self, v: bytes, size: int) -> None:
        if len(v) != size:
            raise ValueError(f"expected {size} bytes, got {len(v)}")
        self.buf += v

    def var_bytes(self, v: bytes) -> None:
        self.u32(len(v))
        self.buf += v

    def string(self, v: str) -> None:
        raw = v.encode("utf-8")
        self.u16(len(raw))
        self.buf += raw

    def boolean(self, v: bool) -> None:
        self.u8(1 if v else 0)

    def items(self, values: Sequence[T], write: Callable[[Writer, T], None]) -> None:
        self.u32(len(values))
        for value in values:
            write(self, value)


# --- reading -------------------------------------------------------------------------


class Reader:
    """Reads primitives with bounds checks; every failure is a DecodeError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(RejectReason.TRUNCATED, f"need {n} bytes at {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def fixed(self, size: int) -> bytes:
        return self.take(size)

    def var_bytes(self, max_len: int) -> bytes:
        n = self.u32()
        if n > max_len:
            raise DecodeError(RejectReason.TOO_LONG, f"{n} bytes > {max_len}")
        return self.take(n)

    def string(self, max_len: int) -> str:
        n = self.u16()
        if n > max_len:
            raise DecodeError(RejectReason.TOO_LONG, f"string of {n} bytes > {max_len}")
        try:
            return self.take(n).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise DecodeError(RejectReason.BAD_UTF8) from None

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise DecodeError(RejectReason.BAD_BOOL, str(v))
        return v == 1

    def items(self, max_count: int, min_item_size: int, read: Callable[[Reader], T]) -> list[T]:
        n = self.u32()
        if n > max_count:
            raise DecodeError(RejectReason.TOO_MANY, f"{n} items > {max_count}")
        # Refuse counts the remaining bytes cannot possibly hold, before allocating.
        if n * min_item_size > self.remaining():
            raise DecodeError(
                RejectReason.TRUNCATED, f"{n} items cannot fit in {self.remaining()} bytes"
            )
        return [read(self) for _ in range(n)]

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(RejectReason.TRAILING_BYTES, f"{len(self.data) - self.pos} bytes")


def _decode_with(data: bytes, read: Callable[[Reader], T]) -> T:
    if len(data) > Limits.MAX_BLOCK_BYTES:
        raise DecodeError(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    reader = Reader(bytes(data))
    value = read(reader)
    reader.finish()
    return value


def _encode_with(value: T, write: Callable[[Writer, T], None]) -> bytes:
    w = Writer()
    write(w, value)
    return bytes(w.buf)


def _compute_signing_root(
    domain: bytes, value: T, write_body: Callable[[Writer, T], None]
) -> bytes:
    """SHA-256 of a domain tag and an object's encoding without its signature."""
    return hashlib.sha256(domain + _encode_with(value, write_body)).digest()


def _enum_value(
    value: int, enum_type: type[PlanAction] | type[RuntimeKind] | type[CommandKind]
) -> int:
    try:
        return int(enum_type(value))
    except ValueError:
        raise DecodeError(RejectReason.BAD_ENUM, f"{enum_type.__name__}={value}") from None


# --- apps ------------------------------------------------------------------------------


def write_app_policy(w: Writer, p: AppPolicy) -> None:
    w.boolean(p.pinned)
    w.var_bytes(p.pin_node)
    w.items(p.allowed_labels, Writer.string)
    w.string(p.anti_affinity)
    w.u32(p.min_interval_slots)


def read_app_policy(r: Reader) -> AppPolicy:
    pinned = r.boolean()
    pin_node = r.var_bytes(HASH_SIZE)
    if pin_node and len(pin_node) != HASH_SIZE:
        raise DecodeError(RejectReason.BAD_PIN_NODE)
    labels = tuple(r.items(Limits.MAX_LABELS, 2, lambda x: x.string(Limits.MAX_SHORT_STR)))
    anti = r.string(Limits.MAX_SHORT_STR)
    return AppPolicy(pinned, pin_node, labels, anti, r.u32())


def write_app_spec(w: Writer, s: AppSpec) -> None:
    w.string(s.name)
    w.u8(int(s.runtime))
    w.string(s.image)
    w.items(s.command, Writer.string)
    w.u32(s.cpu_bp)
    w.u32(s.ram_bp)
    w.boolean(s.stateful)
    write_app_policy(w, s.policy)
    w.u32(s.replica_interval_slots)
    w.u32(s.cpu_limit_millicores)
    w.u64(s.memory_limit_bytes)
    w.u64(s.state_limit_bytes)
    w.boolean(s.run_as_root)


def read_app_spec(r: Reader) -> AppSpec:
    name = r.string(Limits.MAX_SHORT_STR)
    runtime = RuntimeKind(_enum_value(r.u8(), RuntimeKind))
    image = r.string(Limits.MAX_SHORT_STR)
    command = tuple(r.items(Limits.MAX_COMMAND_ARGS, 2, lambda x: x.string(Limits.MAX_ARG_STR)))
    cpu, ram = r.u32(), r.u32()
    stateful = r.boolean()
    policy = read_app_policy(r)
    replica_interval = r.u32()
    return AppSpec(
        name,
        runtime,
        image,
        command,
        cpu,
        ram,
        stateful,
        policy,
        replica_interval,
        cpu_limit_millicores=r.u32(),
        memory_limit_bytes=r.u64(),
        state_limit_bytes=r.u64(),
        run_as_root=r.boolean(),
    )


def encode_app_spec(s: AppSpec) -> bytes:
    return _encode_with(s, write_app_spec)


def decode_app_spec(data: bytes) -> AppSpec:
    return _decode_with(data, read_app_spec)


def compute_submitted_app_id(signer: bytes, seq: int) -> AppId:
    """The id of the app a SUBMIT command creates: unique per (signer, seq), because a
    signer's sequence numbers only grow; independent of the spec, which UPDATE changes."""
    w = Writer()
    w.fixed(signer, PUBLIC_KEY_SIZE)
    w.u64(seq)
    return AppId(hashlib.sha256(b"edgechain/app/v2" + w.buf).digest())


def get_spec_encoding_error(spec: AppSpec) -> str | None:
    """Why ``spec`` cannot be encoded within the decoder's limits, or None.

    A spec the encoder writes but a peer's decoder refuses (a 5000-character name, say)
    would make the whole block undecodable, so APIs and producers check this first.
    """
    checks: list[tuple[str, str, int]] = [
        ("name", spec.name, Limits.MAX_SHORT_STR),
        ("image", spec.image, Limits.MAX_SHORT_STR),
        ("policy.anti_affinity", spec.policy.anti_affinity, Limits.MAX_SHORT_STR),
    ]
    checks += [(f"command[{i}]", a, Limits.MAX_ARG_STR) for i, a in enumerate(spec.command)]
    checks += [
        (f"policy.allowed_labels[{i}]", label, Limits.MAX_SHORT_STR)
        for i, label in enumerate(spec.policy.allowed_labels)
    ]
    for field_name, text, limit in checks:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{field_name}: not valid UTF-8"
        if size > limit:
            return f"{field_name}: {size} bytes > {limit}"
    if len(spec.command) > Limits.MAX_COMMAND_ARGS:
        return f"command: {len(spec.command)} arguments > {Limits.MAX_COMMAND_ARGS}"
    if len(spec.policy.allowed_labels) > Limits.MAX_LABELS:
        return f"policy.allowed_labels: {len(spec.policy.allowed_labels)} > {Limits.MAX_LABELS}"
    if spec.policy.pin_node and len(spec.policy.pin_node) != HASH_SIZE:
        return "policy.pin_node: not a 32-byte node id"
    for field_name, value in (
        ("cpu_bp", spec.cpu_bp),
        ("ram_bp", spec.ram_bp),
        ("policy.min_interval_slots", spec.policy.min_interval_slots),
        ("replica_interval_slots", spec.replica_interval_slots),
        ("cpu_limit_millicores", spec.cpu_limit_millicores),
    ):
        if not 0 <= value < 2**32:
            return f"{field_name}: {value} outside [0, 2^32)"
    for field_name, value in (
        ("memory_limit_bytes", spec.memory_limit_bytes),
        ("state_limit_bytes", spec.state_limit_bytes),
    ):
        if not 0 <= value < 2**64:
            return f"{field_name}: {value} outside [0, 2^64)"
    return None


# --- signed commands -------------------------------------------------------------------


def _read_optional_fixed(r: Reader, size: int, what: str) -> bytes:
    value = r.var_bytes(size)
    if value and len(value) != size:
        raise DecodeError(RejectReason.BAD_LENGTH, what)
    return value


def write_command_body(w: Writer, c: SignedCommand) -> None:
    w.fixed(c.signer, PUBLIC_KEY_SIZE)
    w.u64(c.seq)
    w.u8(int(c.kind))
    w.var_bytes(c.app)
    w.var_bytes(c.node)
    w.var_bytes(c.key)
    w.boolean(c.spec is not None)
    if c.spec is not None:
        write_app_spec(w, c.spec)


def write_command(w: Writer, c: SignedCommand) -> None:
    write_command_body(w, c)
    w.fixed(c.signature, SIGNATURE_SIZE)


def read_command(r: Reader) -> SignedCommand:
    signer = PublicKey(r.fixed(PUBLIC_KEY_SIZE))
    seq = r.u64()
    kind = CommandKind(_enum_value(r.u8(), CommandKind))
    app = _read_optional_fixed(r, HASH_SIZE, "command app")
    node = _read_optional_fixed(r, HASH_SIZE, "command node")
    # 0, 32 (REVOKE_ENROLLMENT) or 48 bytes: check_command_shape holds each kind to its own.
    key = r.var_bytes(PUBLIC_KEY_SIZE)
    spec = read_app_spec(r) if r.boolean() else None
    signature = Signature(r.fixed(SIGNATURE_SIZE))
    return SignedCommand(signer, seq, kind, app, node, key, spec, signature)


_MIN_COMMAND_SIZE = PUBLIC_KEY_SIZE + 8 + 1 + 3 * 4 + 1 + SIGNATURE_SIZE


def encode_command(c: SignedCommand) -> bytes:
    return _encode_with(c, write_command)


def decode_command(data: bytes) -> SignedCommand:
    return _decode_with(data, read_command)


def compute_command_signing_root(chain_id: str, c: SignedCommand) -> bytes:
    """What the signer signs: the domain, the chain id (no replay on another chain) and
    the command without its signature."""
    w = Writer()
    w.string(chain_id)
    write_command_body(w, c)
    return hashlib.sha256(b"edgechain/command/v1" + w.buf).digest()


def compute_command_hash(c: SignedCommand) -> bytes:
    """A command's identity (gossip, API receipts): the hash of its full encoding."""
    return hashlib.sha256(b"edgechain/command-id/v1" + encode_command(c)).digest()


# --- resource reports ----------------------------------------------------------------

_APP_USAGE_SIZE = HASH_SIZE + 4 * 3 + 8 * 3


def write_app_usage(w: Writer, u: AppUsage) -> None:
    w.fixed(u.app, HASH_SIZE)
    w.u32(u.cpu_bp)
    w.u32(u.ram_bp)
    w.u32(u.disk_bp)
    w.u64(u.net_bps)
    w.u64(u.timestamp_ms)
    w.u64(u.state_bytes)


def read_app_usage(r: Reader) -> AppUsage:
    app = AppId(r.fixed(HASH_SIZE))
    cpu, ram, disk = r.u32(), r.u32(), r.u32()
    net, ts, state = r.u64(), r.u64(), r.u64()
    return AppUsage(app, cpu, ram, disk, net, ts, state_bytes=state)


def write_report_body(w: Writer, rep: ResourceReport) -> None:
    w.fixed(rep.node, HASH_SIZE)
    w.u64(rep.slot)
    w.u64(rep.timestamp_ms)
    w.u32(rep.cpu_bp)
    w.u32(rep.ram_bp)
    w.u32(rep.disk_bp)
    w.u32(rep.rtt_us)
    w.u32(rep.pressure_bp)
    w.i32(rep.coordinate.x_us)
    w.i32(rep.coordinate.y_us)
    w.items(rep.apps, write_app_usage)
    w.boolean(rep.vote is not None)
    if rep.vote is not None:
        _write_vote(w, rep.vote)


def write_checkpoint(w: Writer, c: Checkpoint) -> None:
    w.u64(c.epoch)
    w.fixed(c.block, HASH_SIZE)


def read_checkpoint(r: Reader) -> Checkpoint:
    epoch = r.u64()
    return Checkpoint(epoch, BlockHash(r.fixed(HASH_SIZE)))


def _write_vote(w: Writer, vote: FinalityVote) -> None:
    write_checkpoint(w, vote.source)
    write_checkpoint(w, vote.target)


def encode_finality_vote(vote: FinalityVote) -> bytes:
    """A node's last vote as it persists it (``consensus/finality_votes.py``)."""
    return _encode_with(vote, _write_vote)


def decode_finality_vote(data: bytes) -> FinalityVote:
    return _decode_with(data, lambda r: FinalityVote(read_checkpoint(r), read_checkpoint(r)))


def write_report(w: Writer, rep: ResourceReport) -> None:
    write_report_body(w, rep)
    w.fixed(rep.signature, REPORT_SIGNATURE_SIZE)


def read_report(r: Reader) -> ResourceReport:
    node = NodeId(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    ts = r.u64()
    cpu, ram, disk, rtt, pressure = r.u32(), r.u32(), r.u32(), r.u32(), r.u32()
    coordinate = Coordinate(r.i32(), r.i32())
    apps = tuple(r.items(Limits.MAX_APPS_PER_REPORT, _APP_USAGE_SIZE, read_app_usage))
    vote = FinalityVote(read_checkpoint(r), read_checkpoint(r)) if r.boolean() else None
    sig = ReportSignature(r.fixed(REPORT_SIGNATURE_SIZE))
    return ResourceReport(
        node, slot, ts, cpu, ram, disk, rtt, apps, sig, pressure_bp=pressure, vote=vote,
        coordinate=coordinate,
    )  # fmt: skip


MIN_REPORT_SIZE = HASH_SIZE + 8 * 2 + 4 * 5 + 4 * 2 + 4 + 1 + REPORT_SIGNATURE_SIZE


def encode_report(rep: ResourceReport) -> bytes:
    return _encode_with(rep, write_report)


def decode_report(data: bytes) -> ResourceReport:
    return _decode_with(data, read_report)


def compute_report_signing_root(rep: ResourceReport) -> bytes:
    return _compute_signing_root(b"edgechain/report/v3", rep, write_report_body)


# --- plan ------------------------------------------------------------------------------

_PLAN_ENTRY_MIN_SIZE = 1 + HASH_SIZE + 4 + HASH_SIZE


def write_plan_entry(w: Writer, e: PlanEntry) -> None:
    w.u8(int(e.action))
    w.fixed(e.app, HASH_SIZE)
    w.var_bytes(e.origin)
    w.fixed(e.destination, HASH_SIZE)


def read_plan_entry(r: Reader) -> PlanEntry:
    action = PlanAction(_enum_value(r.u8(), PlanAction))
    app = AppId(r.fixed(HASH_SIZE))
    origin = r.var_bytes(HASH_SIZE)
    if action is PlanAction.PLACE and origin:
        raise DecodeError(RejectReason.BAD_PLAN_ENTRY, "PLACE with an origin")
    if action is not PlanAction.PLACE and len(origin) != HASH_SIZE:
        raise DecodeError(RejectReason.BAD_PLAN_ENTRY, f"{action.name} without a 32-byte origin")
    return PlanEntry(action, app, origin, NodeId(r.fixed(HASH_SIZE)))


def encode_plan_entry(e: PlanEntry) -> bytes:
    return _encode_with(e, write_plan_entry)


def decode_plan_entry(data: bytes) -> PlanEntry:
    return _decode_with(data, read_plan_entry)


# --- validator changes -----------------------------------------------------------------


def write_inclusion_body(w: Writer, req: InclusionRequest) -> None:
    w.fixed(req.public_key, PUBLIC_KEY_SIZE)
    w.fixed(req.pop, SIGNATURE_SIZE)
    w.fixed(req.report_key, REPORT_KEY_SIZE)
    w.string(req.address)
    w.items(req.labels, Writer.string)
    w.var_bytes(req.ticket)
    w.u64(req.nonce)


def write_inclusion(w: Writer, req: InclusionRequest) -> None:
    write_inclusion_body(w, req)
    w.fixed(req.signature, SIGNATURE_SIZE)


def read_inclusion(r: Reader) -> InclusionRequest:
    pk = PublicKey(r.fixed(PUBLIC_KEY_SIZE))
    pop = Signature(r.fixed(SIGNATURE_SIZE))
    report_key = r.fixed(REPORT_KEY_SIZE)
    address = r.string(Limits.MAX_SHORT_STR)
    labels = tuple(r.items(Limits.MAX_LABELS, 2, lambda x: x.string(Limits.MAX_SHORT_STR)))
    ticket = r.var_bytes(Limits.MAX_TICKET_BYTES)
    nonce = r.u64()
    signature = Signature(r.fixed(SIGNATURE_SIZE))
    return InclusionRequest(pk, pop, address, labels, ticket, signature, nonce, report_key)


_MIN_INCLUSION_SIZE = PUBLIC_KEY_SIZE + 2 * SIGNATURE_SIZE + REPORT_KEY_SIZE + 2 + 4 + 4 + 8


def encode_inclusion(req: InclusionRequest) -> bytes:
    return _encode_with(req, write_inclusion)


def decode_inclusion(data: bytes) -> InclusionRequest:
    return _decode_with(data, read_inclusion)


def compute_inclusion_signing_root(req: InclusionRequest) -> bytes:
    return _compute_signing_root(b"edgechain/inclusion/v2", req, write_inclusion_body)


def compute_ticket_message(chain_id: str, public_key: bytes) -> bytes:
    """What the network admin signs to admit ``public_key`` to chain ``chain_id``."""
    w = Writer()
    w.string(chain_id)
    w.fixed(public_key, PUBLIC_KEY_SIZE)
    return hashlib.sha256(b"edgechain/ticket/v1" + w.buf).digest()


def write_exit(w: Writer, e: ExitRequest) -> None:
    w.fixed(e.node, HASH_SIZE)
    w.u64(e.slot)
    w.fixed(e.signature, SIGNATURE_SIZE)


def read_exit(r: Reader) -> ExitRequest:
    node = NodeId(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    return ExitRequest(node, slot, Signature(r.fixed(SIGNATURE_SIZE)))


_EXIT_SIZE = HASH_SIZE + 8 + SIGNATURE_SIZE


def compute_exit_signing_root(e: ExitRequest) -> bytes:
    w = Writer()
    w.fixed(e.node, HASH_SIZE)
    w.u64(e.slot)
    return hashlib.sha256(b"edgechain/exit/v1" + w.buf).digest()


def write_address_record(w: Writer, a: AddressRecord) -> None:
    w.fixed(a.node, HASH_SIZE)
    w.string(a.address)
    w.u64(a.slot)
    w.fixed(a.signature, SIGNATURE_SIZE)


def read_address_record(r: Reader) -> AddressRecord:
    node = NodeId(r.fixed(HASH_SIZE))
    address = r.string(Limits.MAX_SHORT_STR)
    slot = Slot(r.u64())
    return AddressRecord(node, address, slot, Signature(r.fixed(SIGNATURE_SIZE)))


_MIN_ADDRESS_RECORD_SIZE = HASH_SIZE + 2 + 8 + SIGNATURE_SIZE


def compute_address_signing_root(chain_id: str, a: AddressRecord) -> bytes:
    """What a validator signs to move its address (bound to the chain, like a ticket)."""
    w = Writer()
    w.string(chain_id)
    w.fixed(a.node, HASH_SIZE)
    w.string(a.address)
    w.u64(a.slot)
    return hashlib.sha256(b"edgechain/address/v1" + w.buf).digest()


# --- genesis ---------------------------------------------------------------------------


def write_params(w: Writer, p: ChainParams) -> None:
    w.string(p.chain_id)
    w.u64(p.genesis_time_ms)
    w.u32(p.slot_duration_ms)
    w.u32(p.committee_size)
    w.u32(p.epoch_length)
    w.u64(p.initial_difficulty)
    w.u32(p.vdf_target_bp)
    w.var_bytes(p.admin_key)
    w.u32(p.nodes_per_cluster)
    w.u32(p.max_migrations_per_slot)
    w.boolean(p.open_admission)
    w.u32(p.down_after_slots)


def read_params(r: Reader) -> ChainParams:
    chain_id = r.string(Limits.MAX_SHORT_STR)
    genesis_time, slot_ms, committee, epoch = r.u64(), r.u32(), r.u32(), r.u32()
    difficulty, target = r.u64(), r.u32()
    admin = r.var_bytes(PUBLIC_KEY_SIZE)
    if admin and len(admin) != PUBLIC_KEY_SIZE:
        raise DecodeError(RejectReason.BAD_ADMIN_KEY)
    return ChainParams(
        chain_id, genesis_time, slot_ms, committee, epoch, difficulty, target, admin,
        r.u32(), r.u32(), r.boolean(), r.u32(),
    )  # fmt: skip


def write_genesis(w: Writer, g: Genesis) -> None:
    w.u8(TAG_GENESIS)
    write_params(w, g.params)
    w.items(g.inclusions, write_inclusion)
    w.u64(g.timestamp_ms)


def read_genesis(r: Reader) -> Genesis:
    if r.u8() != TAG_GENESIS:
        raise DecodeError(RejectReason.BAD_TAG, "not a genesis block")
    params = read_params(r)
    inclusions = tuple(r.items(Limits.MAX_INCLUSIONS, _MIN_INCLUSION_SIZE, read_inclusion))
    return Genesis(params, inclusions, r.u64())


def encode_genesis(g: Genesis) -> bytes:
    return _encode_with(g, write_genesis)


def decode_genesis(data: bytes) -> Genesis:
    return _decode_with(data, read_genesis)


def compute_genesis_hash(g: Genesis) -> BlockHash:
    return BlockHash(
        hashlib.sha256(f"edgechain/genesis/v{FORMAT_VERSION}".encode() + encode_genesis(g)).digest()
    )


# --- blocks ----------------------------------------------------------------------------

BLOCK_HASH_DOMAIN = f"edgechain/block/v{FORMAT_VERSION}".encode()


def _write_block_header(w: Writer, b: Block) -> None:
    w.u8(TAG_BLOCK)
    w.fixed(b.parent, HASH_SIZE)
    w.u64(b.slot)
    w.u64(b.epoch)
    w.fixed(b.producer, HASH_SIZE)
    w.u64(b.timestamp_ms)
    w.u64(b.difficulty)
    w.fixed(b.vdf_output, VDF_FORM_SIZE)
    w.fixed(b.vdf_proof, VDF_FORM_SIZE)
    w.fixed(b.state_root, HASH_SIZE)
    w.items(b.reports, write_report)
    w.items(b.plan, write_plan_entry)
    w.items(b.inclusions, write_inclusion)
    w.items(b.exits, write_exit)
    w.items(b.commands, write_command)
    w.items(b.addresses, write_address_record)


def _write_skip_header(w: Writer, b: SkipBlock) -> None:
    w.u8(TAG_SKIP_BLOCK)
    w.fixed(b.parent, HASH_SIZE)
    w.u64(b.slot)
    w.fixed(b.excluded, HASH_SIZE)


def _write_attestation(w: Writer, signers: bytes, aggregate: bytes) -> None:
    w.var_bytes(signers)
    w.fixed(aggregate, SIGNATURE_SIZE)


def encode_block_with_header_size(b: AnyBlock) -> tuple[bytes, int]:
    """The full encoding and the length of its header prefix (what the hash covers)."""
    w = Writer()
    if isinstance(b, Block):
        _write_block_header(w, b)
        header_size = len(w.buf)
        w.fixed(b.producer_signature, SIGNATURE_SIZE)
    else:
        _write_skip_header(w, b)
        header_size = len(w.buf)
    _write_attestation(w, b.signers, b.aggregate_signature)
    return bytes(w.buf), header_size


def encode_block(b: AnyBlock) -> bytes:
    return encode_block_with_header_size(b)[0]


def _hash_header(header: bytes) -> BlockHash:
    return BlockHash(hashlib.sha256(BLOCK_HASH_DOMAIN + header).digest())


def compute_block_hash(b: AnyBlock) -> BlockHash:
    w = Writer()
    if isinstance(b, Block):
        _write_block_header(w, b)
    else:
        _write_skip_header(w, b)
    return _hash_header(bytes(w.buf))


def _read_block_body(r: Reader) -> Block:
    parent = BlockHash(r.fixed(HASH_SIZE))
    slot, epoch = Slot(r.u64()), r.u64()
    producer = NodeId(r.fixed(HASH_SIZE))
    ts, difficulty = r.u64(), r.u64()
    vdf_output, vdf_proof = r.fixed(VDF_FORM_SIZE), r.fixed(VDF_FORM_SIZE)
    state_root = r.fixed(HASH_SIZE)
    reports = tuple(r.items(Limits.MAX_REPORTS, MIN_REPORT_SIZE, read_report))
    plan = tuple(r.items(Limits.MAX_PLAN_ENTRIES, _PLAN_ENTRY_MIN_SIZE, read_plan_entry))
    inclusions = tuple(r.items(Limits.MAX_INCLUSIONS, _MIN_INCLUSION_SIZE, read_inclusion))
    exits = tuple(r.items(Limits.MAX_EXITS, _EXIT_SIZE, read_exit))
    commands = tuple(r.items(Limits.MAX_COMMANDS, _MIN_COMMAND_SIZE, read_command))
    addresses = tuple(r.items(Limits.MAX_ADDRESSES, _MIN_ADDRESS_RECORD_SIZE, read_address_record))
    producer_sig = Signature(r.fixed(SIGNATURE_SIZE))
    signers = r.var_bytes(Limits.MAX_SIGNER_BYTES)
    aggregate = Signature(r.fixed(SIGNATURE_SIZE))
    return Block(
        parent, slot, epoch, producer, ts, difficulty, vdf_output, vdf_proof, state_root,
        reports, plan, inclusions, exits, commands, producer_sig, signers, aggregate,
        addresses,
    )  # fmt: skip


def _read_skip_body(r: Reader) -> SkipBlock:
    parent = BlockHash(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    excluded = NodeId(r.fixed(HASH_SIZE))
    signers = r.var_bytes(Limits.MAX_SIGNER_BYTES)
    return SkipBlock(parent, slot, excluded, signers, Signature(r.fixed(SIGNATURE_SIZE)))


def decode_block_with_hash(data: bytes) -> tuple[AnyBlock, BlockHash]:
    """Decode a block and compute its hash from the received bytes (no re-encoding)."""
    if len(data) > Limits.MAX_BLOCK_BYTES:
        raise DecodeError(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    r = Reader(bytes(data))
    tag = r.u8()
    block: AnyBlock
    if tag == TAG_BLOCK:
        block = _read_block_body(r)
        header_end = r.pos - SIGNATURE_SIZE - 4 - len(block.signers) - SIGNATURE_SIZE
    elif tag == TAG_SKIP_BLOCK:
        block = _read_skip_body(r)
        header_end = r.pos - 4 - len(block.signers) - SIGNATURE_SIZE
    else:
        raise DecodeError(RejectReason.BAD_TAG, f"block tag {tag}")
    r.finish()
    return block, _hash_header(r.data[:header_end])


def decode_block(data: bytes) -> AnyBlock:
    return decode_block_with_hash(data)[0]


def compute_vote_message(block_hash: BlockHash) -> bytes:
    """What a committee member signs for a block or skip block (domain-separated)."""
    return b"edgechain/vote/v1" + block_hash


def compute_producer_message(block_hash: BlockHash) -> bytes:
    return b"edgechain/producer/v1" + block_hash
