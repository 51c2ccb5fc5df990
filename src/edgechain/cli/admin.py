"""``edgechain admin ...``: keys, tickets, operators, exclusions (the admin key signs).

The admin key is fixed at genesis (``edgechain node --genesis --admin-key PUBKEY``). It
mints admission tickets for new validators (off chain: the ticket goes on the joining
node's command line), grants and revokes operator keys, excludes and drains nodes (signed
commands, applied by a block like every app command).
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from edgechain.chain.assembly import make_ticket
from edgechain.chain.enrollment import (
    TOKEN_ID_SIZE,
    TOKEN_SIZE,
    decode_enrollment_token,
    make_enrollment_token,
)
from edgechain.chain.model import CommandKind
from edgechain.cli.client import Fleet
from edgechain.cli.commands import CommandResult, get_chain_id, send_command
from edgechain.cli.common import EXIT_USAGE, CliError, print_json, short
from edgechain.cli.context import Context, parse_hex
from edgechain.cli.fleet import resolve_excludable_id, resolve_node_id
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.keystore import create_keystore, load_keystore
from edgechain.errors import KeystoreError
from edgechain.types import PUBLIC_KEY_SIZE, PublicKey, SecretKey


def parse_public_key(text: str) -> bytes:
    """A public key given as 96 hex digits or as a keystore file holding it."""
    if Path(text).is_file():
        try:
            return bytes(bls.sk_to_pk(load_keystore(text)))
        except KeystoreError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    return parse_hex(text, PUBLIC_KEY_SIZE, "public key")


def grant_operator(
    fleet: Fleet,
    admin_sk: SecretKey,
    public_key: bytes,
    *,
    wait: bool = True,
    timeout: float = 60.0,
) -> CommandResult:
    """Make ``public_key`` an operator (``edgechain admin grant``; also the testnet's)."""
    return send_command(
        fleet, admin_sk, CommandKind.GRANT_OPERATOR, key=public_key, wait=wait, timeout=timeout
    )


def _print_result(ctx: Context, result: CommandResult, what: str) -> None:
    ctx.emit(result.to_json(), result.describe(what))


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        sk = create_keystore(args.file)
    except KeystoreError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    pk = bls.sk_to_pk(sk)
    value = {"file": args.file, "public_key": bytes(pk).hex(), "node_id": compute_node_id(pk).hex()}
    if args.json:
        print_json(value)
    else:
        print(
            f"wrote {args.file}\npublic key  {value['public_key']}\nnode id     {value['node_id']}"
        )
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    public_key = parse_public_key(args.public_key)
    ctx = Context.from_args(args)
    chain_id = args.chain_id or get_chain_id(ctx.fleet)
    ticket = make_ticket(ctx.admin_key(), chain_id, PublicKey(public_key)).hex()
    ctx.emit({"public_key": public_key.hex(), "chain_id": chain_id, "ticket": ticket}, ticket)
    return 0


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``7d`` (a bare number is seconds), above 0."""
    text = text.strip().lower()
    unit = DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        seconds = int(number) * (unit or 1)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise CliError(f"{text!r} is not a duration such as 90s, 30m, 12h or 7d", EXIT_USAGE)
    return seconds


def cmd_enroll(args: argparse.Namespace) -> int:
    """A new enrollment token: valid from now for ``--valid-for``, in slots of the chain.

    With ``--slot-duration`` it is made offline, its slots counted from genesis: for the
    founders of a chain, the genesis node included (every replica of a deployment can
    then be handed the same token before the chain exists)."""
    ctx = Context.from_args(args)
    valid_for_s = parse_duration_s(args.valid_for)
    if args.slot_duration is not None:
        if args.slot_duration <= 0:
            raise CliError("--slot-duration: expected seconds above 0", EXIT_USAGE)
        chain_id, slot_ms, now_slot = args.chain_id, int(args.slot_duration * 1000), 0
    else:
        status = ctx.fleet.get("/status")
        if not isinstance(status, dict) or not status.get("slot_duration_ms"):
            raise CliError(
                "the node has no chain yet: make the token for its founders with "
                "--slot-duration (and --chain-id), counted from genesis",
                EXIT_USAGE,
            )
        chain_id, slot_ms = str(status["chain_id"]), int(status["slot_duration_ms"])
        now_slot = int(status["slot"])
    slots = -(-valid_for_s * 1000 // slot_ms)
    expires_slot = now_slot + slots
    token = make_enrollment_token(
        ctx.admin_key(), chain_id, secrets.token_bytes(TOKEN_ID_SIZE), expires_slot
    )
    value = {
        "token": token.encode().hex(),
        "token_id": token.token_id.hex(),
        "expires_slot": expires_slot,
        "chain_id": chain_id,
    }
    ctx.emit(value, value["token"])
    return 0


def cmd_revoke_enrollment(args: argparse.Namespace) -> int:
    token_id = parse_token_id(args.token)
    ctx = Context.from_args(args)
    result = ctx.send(ctx.admin_key(), CommandKind.REVOKE_ENROLLMENT, key=token_id)
    _print_result(ctx, result, f"revoke enrollment {short(token_id.hex(), 16)}")
    return 0


def parse_token_id(text: str) -> bytes:
    """A token's id: the token itself (272 hex digits) or its id (64)."""
    text = text.strip()
    if len(text.removeprefix("0x")) == 2 * TOKEN_SIZE:
        return decode_enrollment_token(parse_hex(text, TOKEN_SIZE, "token")).token_id
    if len(text.removeprefix("0x")) == 2 * TOKEN_ID_SIZE:
        return parse_hex(text, TOKEN_ID_SIZE, "token id")
    raise CliError(
        f"expected an enrollment token ({2 * TOKEN_SIZE} hex digits) or its id "
        f"({2 * TOKEN_ID_SIZE})",
        EXIT_USAGE,
    )


def cmd_grant(args: argparse.Namespace) -> int:
    public_key = parse_public_key(args.public_key)
    ctx = Context.from_args(args)
    result = grant_operator(
        ctx.fleet, ctx.admin_key(), public_key, wait=ctx.wait, timeout=ctx.timeout
    )
    _print_result(ctx, result, f"grant operator {short(public_key.hex(), 16)}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    public_key = parse_public_key(args.public_key)
    ctx = Context.from_args(args)
    result = ctx.send(ctx.admin_key(), CommandKind.REVOKE_OPERATOR, key=public_key)
    _print_result(ctx, result, f"revoke operator {short(public_key.hex(), 16)}")
    return 0


def cmd_exclude(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    node = resolve_excludable_id(ctx, args.node)
    result = ctx.send(ctx.admin_key(), CommandKind.EXCLUDE_NODE, node=node)
    _print_result(ctx, result, f"exclude node {short(node.hex())}")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    node = resolve_node_id(ctx, args.node)
    kind = CommandKind.UNDRAIN_NODE if args.undo else CommandKind.DRAIN_NODE
    result = ctx.send(ctx.admin_key(), kind, node=node)
    verb = "undrain" if args.undo else "drain"
    _print_result(ctx, result, f"{verb} node {short(node.hex())}")
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    admin = sub.add_parser("admin", help="admin key operations: keys, tickets, operators")
    group = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    pubkey_help = "public key (96 hex digits) or a keystore file holding it"

    keygen = group.add_parser(
        "keygen", parents=[common], help="create a keystore file (0600) and print its public key"
    )
    keygen.add_argument("file", help="the new keystore file (never overwritten)")
    keygen.set_defaults(func=cmd_keygen)

    ticket = group.add_parser(
        "ticket", parents=[common], help="print an admission ticket (hex) for a node's key"
    )
    ticket.add_argument("public_key", help=pubkey_help)
    ticket.add_argument("--chain-id", help="the chain's id (default: ask a node)")
    ticket.set_defaults(func=cmd_ticket)

    enroll = group.add_parser(
        "enroll",
        parents=[common],
        help="print a new enrollment token (hex): it admits any node that presents it "
        "(--enrollment-token-file), until it expires or is revoked",
    )
    enroll.add_argument(
        "--valid-for", default="7d", metavar="DURATION", help="e.g. 12h or 30d (default 7d)"
    )
    enroll.add_argument(
        "--slot-duration",
        type=float,
        metavar="SEC",
        help="make the token offline, before genesis, for a chain of this slot length (its "
        "founders, the genesis node included); its validity counts from genesis",
    )
    enroll.add_argument(
        "--chain-id", default="edgechain", metavar="NAME", help="with --slot-duration"
    )
    enroll.set_defaults(func=cmd_enroll)
    revoke_enrollment = group.add_parser(
        "revoke-enrollment",
        parents=[common],
        help="refuse an enrollment token from the next block on (nodes it admitted stay)",
    )
    revoke_enrollment.add_argument("token", help="the token, or its id (64 hex digits)")
    revoke_enrollment.set_defaults(func=cmd_revoke_enrollment)

    for name, help_text, func in (
        ("grant", "make a key an operator (it may then sign app commands)", cmd_grant),
        ("revoke", "refuse an operator key from the next block on", cmd_revoke),
    ):
        parser = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.add_argument("public_key", help=pubkey_help)
        parser.set_defaults(func=func)

    exclude = group.add_parser(
        "exclude",
        parents=[common],
        help="remove a validator and ban its key; also takes it (or a dead device no "
        "longer a validator) out of the finality voters (`edgechain status`: finality "
        "held back)",
    )
    exclude.add_argument(
        "node",
        help="node id or unique prefix (see `edgechain nodes`, or the silent voters of "
        "`edgechain --json status`)",
    )
    exclude.set_defaults(func=cmd_exclude)

    drain = group.add_parser(
        "drain",
        parents=[common],
        help="move a validator's apps away and place nothing on it (it keeps validating)",
    )
    drain.add_argument("node", help="node id or unique prefix (see `edgechain nodes`)")
    drain.add_argument("--undo", action="store_true", help="let the node take apps again")
    drain.set_defaults(func=cmd_drain)
