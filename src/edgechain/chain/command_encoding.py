"""Canonical encoding of app specs and the signed commands that carry them, their ids and
signing roots (``tests/vectors/README.md``), and the spec check against the decoders' limits."""

from __future__ import annotations

import hashlib

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import (
    Reader,
    Writer,
    check_enum_value,
    decode_with,
    encode_with,
)
from edgechain.chain.model import AppPolicy, AppSpec, CommandKind, RuntimeKind, SignedCommand
from edgechain.errors import DecodeError, RejectReason
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, AppId, PublicKey, Signature

# --- apps ------------------------------------------------------------------------------


def write_app_policy(w: Writer, p: AppPolicy) -> None:
    w.boolean(p.pinned)
    w.var_bytes(p.pin_node)
    w.items(p.allowed_labels, Writer.string)
    w.string(p.anti_affinity)
    w.u32(p.min_interval_slots)
    w.boolean(p.wait_for_state)


def read_app_policy(r: Reader) -> AppPolicy:
    pinned = r.boolean()
    pin_node = r.var_bytes(HASH_SIZE)
    if pin_node and len(pin_node) != HASH_SIZE:
        raise DecodeError(RejectReason.BAD_PIN_NODE)
    labels = tuple(r.items(Limits.MAX_LABELS, 2, lambda x: x.string(Limits.MAX_SHORT_STR)))
    anti = r.string(Limits.MAX_SHORT_STR)
    min_interval = r.u32()
    return AppPolicy(pinned, pin_node, labels, anti, min_interval, r.boolean())


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
    runtime = RuntimeKind(check_enum_value(r.u8(), RuntimeKind))
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
    return encode_with(s, write_app_spec)


def decode_app_spec(data: bytes) -> AppSpec:
    return decode_with(data, read_app_spec)


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
    kind = CommandKind(check_enum_value(r.u8(), CommandKind))
    app = _read_optional_fixed(r, HASH_SIZE, "command app")
    node = _read_optional_fixed(r, HASH_SIZE, "command node")
    # 0, 32 (REVOKE_ENROLLMENT) or 48 bytes: check_command_shape holds each kind to its own.
    key = r.var_bytes(PUBLIC_KEY_SIZE)
    spec = read_app_spec(r) if r.boolean() else None
    signature = Signature(r.fixed(SIGNATURE_SIZE))
    return SignedCommand(signer, seq, kind, app, node, key, spec, signature)


MIN_COMMAND_SIZE = PUBLIC_KEY_SIZE + 8 + 1 + 3 * 4 + 1 + SIGNATURE_SIZE


def encode_command(c: SignedCommand) -> bytes:
    return encode_with(c, write_command)


def decode_command(data: bytes) -> SignedCommand:
    return decode_with(data, read_command)


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
