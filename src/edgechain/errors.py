"""Error types.

Following h11's split between local and remote protocol errors: a :class:`PeerError`
means *another node* sent us something invalid. It is counted, logged at debug and
never crashes the node. A :class:`LocalError` (or any other exception) is our own bug
or misconfiguration and should surface loudly.
"""

from __future__ import annotations

import enum
import os


class RejectReason(enum.StrEnum):
    """Why a peer's input was refused: the one list of rejection codes.

    Every :class:`PeerError` carries one, and every counter of refused input
    (``EngineStats.peer_errors``, the node's ``decode_errors``, the transfer server's
    refusals) is keyed by one, so a typo is an ``AttributeError`` at the raise site, not
    a new metrics label. Each member's value is its name in lower case; values are what
    the status JSON, the logs and the tests show, so a value never changes.
    """

    # --- canonical encoding (chain/*encoding*.py; the wire codec reuses a few) --------
    TRUNCATED = "truncated"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    TOO_MANY = "too_many"
    TRAILING_BYTES = "trailing_bytes"
    BAD_UTF8 = "bad_utf8"
    BAD_BOOL = "bad_bool"
    BAD_ENUM = "bad_enum"
    BAD_LENGTH = "bad_length"
    BAD_TAG = "bad_tag"
    BAD_PIN_NODE = "bad_pin_node"
    BAD_PLAN_ENTRY = "bad_plan_entry"
    BAD_ADMIN_KEY = "bad_admin_key"

    # --- envelopes and frames (wire/codec.py, wire/payload_decoding.py, framing.py) ---
    STREAM_FAILED = "stream_failed"
    BAD_FRAME_SIZE = "bad_frame_size"
    BAD_VERSION = "bad_version"
    """Also a transfer header's version (runtime/protocol.py)."""
    EMPTY_PAYLOAD = "empty_payload"
    NOT_GOSSIPABLE = "not_gossipable"
    MALFORMED = "malformed"
    UNEXPECTED_SIGNATURE = "unexpected_signature"
    UNEXPECTED_MAC = "unexpected_mac"
    KEY_MISMATCH = "key_mismatch"
    BAD_ENVELOPE_MAC = "bad_envelope_mac"
    BAD_ENVELOPE_SIGNATURE = "bad_envelope_signature"
    BAD_ADDRESS = "bad_address"
    BAD_CANDIDATE = "bad_candidate"
    BAD_LIMIT = "bad_limit"

    # --- gossip and DHT (wire/payload_decoding.py, network/dht.py) --------------------
    BAD_TTL = "bad_ttl"
    EMPTY_GOSSIP = "empty_gossip"
    BAD_MESSAGE_ID = "bad_message_id"
    UNEXPECTED_ANSWER = "unexpected_answer"
    """A DHT answer that matches no request of ours."""

    # --- BLS keys and signatures (crypto/bls.py) --------------------------------------
    BAD_PUBLIC_KEY = "bad_public_key"
    BAD_SIGNATURE = "bad_signature"
    EMPTY_AGGREGATE = "empty_aggregate"

    # --- a block on its own (chain/validation.py) -------------------------------------
    BAD_PARENT = "bad_parent"
    BAD_SLOT = "bad_slot"
    BAD_EPOCH = "bad_epoch"
    BAD_PRODUCER = "bad_producer"
    BAD_DIFFICULTY = "bad_difficulty"
    BAD_VDF = "bad_vdf"
    BAD_PRODUCER_SIGNATURE = "bad_producer_signature"
    BAD_BITFIELD = "bad_bitfield"
    NO_MAJORITY = "no_majority"
    BAD_AGGREGATE_SIGNATURE = "bad_aggregate_signature"
    BAD_REPORT = "bad_report"
    BAD_REPORT_SIGNATURE = "bad_report_signature"
    """Also a relayed report's signature (consensus/reports.py)."""
    DUPLICATE_REPORT = "duplicate_report"
    BAD_INCLUSION = "bad_inclusion"
    BAD_PROOF_OF_POSSESSION = "bad_proof_of_possession"
    BAD_ADMISSION_TICKET = "bad_admission_ticket"
    BAD_EXIT = "bad_exit"
    STALE_EXIT = "stale_exit"
    """An exit gossiped after its node left, or signed in an earlier stay of it: honest
    nodes relay such (gossip's pull repair), so it is counted apart from ``bad_exit``
    (``consensus/joining.py``). A block that carries one is still ``bad_exit``."""
    BAD_ADDRESS_RECORD = "bad_address_record"
    BAD_SUBMISSION = "bad_submission"
    BAD_PLAN = "bad_plan"
    BAD_GENESIS = "bad_genesis"

    # --- a block on its parent's state (consensus/state.py) ---------------------------
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_DIFFICULTY_RULE = "bad_difficulty_rule"
    WRONG_PLAN = "wrong_plan"
    BANNED_NODE = "banned_node"
    BAD_STATE_ROOT = "bad_state_root"
    """A block's ``state_root`` is not its parent state's, or a state fetched for
    checkpoint sync does not match the root it was checked against."""

    # --- a block's migration plan on the registry (orchestrator/registry.py) ----------
    PLAN_APP_TWICE = "plan_app_twice"
    PLAN_UNKNOWN_APP = "plan_unknown_app"
    PLAN_PLACE_NOT_QUEUED = "plan_place_not_queued"
    PLAN_WRONG_ORIGIN = "plan_wrong_origin"
    PLAN_MIGRATE_IN_PLACE = "plan_migrate_in_place"

    # --- signed commands (chain/authority.py, orchestrator/commands.py, the pool) -----
    COMMAND_BAD_SIGNATURE = "command_bad_signature"
    COMMAND_UNKNOWN_SIGNER = "command_unknown_signer"
    COMMAND_REVOKED = "command_revoked"
    COMMAND_REPLAYED = "command_replayed"
    COMMAND_NOT_ADMIN = "command_not_admin"
    COMMAND_MALFORMED = "command_malformed"
    COMMAND_INVALID = "command_invalid"
    """Authentic, but it does not apply to the state (unknown app, bad target, ...)."""
    COMMAND_POOL_FULL = "command_pool_full"
    NO_CHAIN = "no_chain"
    """A command submitted before the node has a chain (the API answers 503)."""

    # --- joining (consensus/joining.py) -----------------------------------------------
    FOREIGN_GENESIS = "foreign_genesis"
    BAD_GENESIS_SIGNATURE = "bad_genesis_signature"

    # --- candidates and votes (consensus/committee.py, consensus/producer.py) ---------
    CANDIDATE_TO_NON_MEMBER = "candidate_to_non_member"
    EQUIVOCATING_PRODUCER = "equivocating_producer"
    SKIP_VOTE_WRONG_PRODUCER = "skip_vote_wrong_producer"
    VOTE_OUTSIDE_COMMITTEE = "vote_outside_committee"
    BAD_VOTE_SIGNATURE = "bad_vote_signature"
    DOUBLE_VOTE = "double_vote"
    DUPLICATE_VOTE = "duplicate_vote"

    # --- resource reports (consensus/reports.py) --------------------------------------
    REPORT_NAMES_APP_NOT_RUN = "report_names_app_not_run"

    # --- the local store (consensus/engine.py) ----------------------------------------
    STORED_BLOCK_HASH_MISMATCH = "stored_block_hash_mismatch"
    """A stored block whose hash is not its key: counted with peer errors and skipped."""

    # --- transfer frames (runtime/protocol.py, runtime/transfer_common.py) ------------
    HEADER_TOO_LARGE = "header_too_large"
    HEADER_TRUNCATED = "header_truncated"
    HEADER_TRAILING_BYTES = "header_trailing_bytes"
    BAD_MAGIC = "bad_magic"
    BAD_OFFER_SIGNATURE = "bad_offer_signature"
    VERDICT_TRUNCATED = "verdict_truncated"
    BAD_VERDICT = "bad_verdict"
    BAD_FLAGS = "bad_flags"
    BAD_BEGIN = "bad_begin"
    BAD_END = "bad_end"
    UNKNOWN_FRAME = "unknown_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNEXPECTED_FRAME = "unexpected_frame"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """Also a replica offer refused for its announced size (runtime/transfer_server.py)."""
    NO_ROOM = "no_room"
    """The destination's disk cannot take the announced payload above its reserve
    (``runtime/disk_guard.DiskSpace.get_writable``): its own condition, not the peer's
    fault; the origin keeps the app and tries again."""
    SIZE_MISMATCH = "size_mismatch"
    BAD_COMPRESSION = "bad_compression"
    CHECKSUM_MISMATCH = "checksum_mismatch"

    # --- transfer archives (runtime/archive.py) ---------------------------------------
    ARCHIVE_TOO_MANY_MEMBERS = "archive_too_many_members"
    ARCHIVE_UNEXPECTED_IMAGE = "archive_unexpected_image"
    ARCHIVE_BAD_IMAGE = "archive_bad_image"
    ARCHIVE_BAD_MEMBER = "archive_bad_member"
    ARCHIVE_MALFORMED = "archive_malformed"
    ARCHIVE_WITHOUT_STATE = "archive_without_state"

    # --- pre-copy state deltas (runtime/state_delta.py, transfer_server.py) -----------
    DELTA_MALFORMED = "delta_malformed"
    DELTA_BAD_PATH = "delta_bad_path"
    DELTA_BAD_BLOCK = "delta_bad_block"
    DELTA_TOO_MANY_ENTRIES = "delta_too_many_entries"
    PRECOPY_NOT_OFFERED = "precopy_not_offered"
    """A pre-copy round the destination did not offer, or more rounds than it allows."""

    # --- transfer connections (runtime/protocol.py, transfer_client.py, ...) ----------
    CONNECTION_CLOSED = "connection_closed"
    CONNECTION_ERROR = "connection_error"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_FAILED = "connect_failed"
    TIMEOUT = "timeout"
    NACK = "nack"
    """The peer aborted with a NACK; its text (peer-supplied) is the detail."""
    ORIGIN_ABORTED = "origin_aborted"
    ORIGIN_GONE = "origin_gone"

    # --- offers a transfer server refuses (runtime/transfer_server.py) ----------------
    NOT_A_MIGRATION = "not_a_migration"
    WRONG_DESTINATION = "wrong_destination"
    SPEC_DOES_NOT_MATCH_APP = "spec_does_not_match_app"
    WRONG_RUNTIME = "wrong_runtime"
    UNAUTHENTICATED_ORIGIN = "unauthenticated_origin"
    PLAN_CHECK_FAILED = "plan_check_failed"
    """Our own plan check raised (logged loudly); the offer is refused all the same."""
    NOT_PLANNED = "not_planned"
    APP_ALREADY_RUNNING_HERE = "app_already_running_here"
    REPLICAS_NOT_ACCEPTED = "replicas_not_accepted"
    REPLICA_CHECK_FAILED = "replica_check_failed"
    """Our own replica check raised (logged loudly); the offer is refused."""
    REPLICA_NOT_WANTED = "replica_not_wanted"
    STALE_SLOT = "stale_slot"


class EdgechainError(Exception):
    """Base of every error edgechain raises on purpose."""


class PeerError(EdgechainError):
    """Invalid input from a peer: bad encoding, signature, proof, vote or size.

    ``reason`` is a stable code from :class:`RejectReason` (metrics labels, tests),
    ``detail`` free text for logs.
    """

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(PeerError):
    """Bytes that do not decode to a well-formed message or block."""


class ValidationError(PeerError):
    """A well-formed object that breaks a protocol rule."""


class LocalError(EdgechainError):
    """Our own misuse or misconfiguration (not a peer's fault)."""


CANNOT_LISTEN = "cannot listen on"
"""How a :class:`BindError`'s message starts (the testnet launcher reads it in a node's
standard error)."""


class BindError(LocalError):
    """An address this node must listen on cannot be had: the port is taken (by another
    process, or a copy of this node), or the host is not one of this machine's."""

    def __init__(self, what: str, host: str, port: int, cause: OSError, hint: str = "") -> None:
        # os.strerror: asyncio's own message repeats the address.
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(f"{CANNOT_LISTEN} {host}:{port} for {what}: {reason}{hint}")


class KeystoreError(LocalError):
    """A keystore file that is missing, corrupt, truncated or not ours."""


class StoreError(LocalError):
    """The local block store is unusable."""


class StoreFullError(StoreError):
    """The file system holding the block store is full (SQLite ``SQLITE_FULL``): the
    write was rolled back, nothing of it is stored. Local, not a peer's fault; the node
    stops and comes back once space is freed (ARCHITECTURE.md, "Real node", full disk)."""


class StoreCorruptError(StoreError):
    """The block store's file is damaged: SQLite reports it malformed (``SQLITE_CORRUPT``,
    ``SQLITE_NOTADB``), its ``quick_check`` at open fails, or a stored block does not
    decode to its hash. Nothing repairs it in place: the node stops and its operator
    moves the file aside, after which the node syncs the chain from its peers
    (:func:`make_corrupt_store_error` says so in every such error)."""


def make_corrupt_store_error(path: str, what: str) -> StoreCorruptError:
    """``block store PATH WHAT``, then what the node's operator should do about it."""
    return StoreCorruptError(
        f"block store {path} {what}; with the node stopped, move {path} and its -wal and"
        " -shm files aside and start the node again: it syncs the chain from its peers"
    )
