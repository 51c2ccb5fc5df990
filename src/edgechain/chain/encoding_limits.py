"""The decoders' hard limits on what a peer may send (``tests/vectors/README.md``), kept
apart so that APIs and the wire can bound their input without the encoders."""

from __future__ import annotations

from edgechain.chain.enrollment import TOKEN_SIZE


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
