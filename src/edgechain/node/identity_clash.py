"""Another process signs as this node: stop, and stay stopped until the operator acts.

The engine tells (``consensus/own_reports.py``, the ``IdentityClash`` event) when a
valid block carries a report signed with this node's key that this process did not
sign: a data directory copied to a second device, or restored from a backup while the
original runs. Both processes would run every app the chain places on the node. The
node cannot tell which copy is the rightful one, so it takes the safe side: it writes
:data:`CLASH_FILE` into its data directory, stops its apps and exits with
:data:`EXIT_IDENTITY_CLASH`. The chain then takes the node for down and recovers its
apps elsewhere, exactly once, as for any dead node. A restart refuses to run while the
file is there (a service manager's restart loop runs no app): the operator gives each
device its own identity, then deletes the file on the one that keeps this one.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgechain.consensus.messages import IdentityClash
from edgechain.errors import LocalError
from edgechain.runtime.durable_files import write_json_atomically

CLASH_FILE = "identity-clash.json"
EXIT_IDENTITY_CLASH = 78
"""BSD's ``EX_CONFIG``: a configuration error (one identity on two devices)."""


class IdentityClashError(LocalError):
    """This data directory's node stopped because another process signed as it."""


def write_clash_file(data_dir: Path, clash: IdentityClash, now_ms: int) -> Path:
    path = data_dir / CLASH_FILE
    write_json_atomically(
        path,
        {
            "detected_ms": now_ms,
            "block": clash.block.hex(),
            "block_slot": clash.block_slot,
            "report_slot": clash.report_slot,
        },
    )
    return path


def describe_clash(data_dir: Path, report_slot: int) -> str:
    return (
        f"another process signs as this node (its report for slot {report_slot} is on the "
        f"chain, and this process did not sign it): a copy of {data_dir} runs elsewhere, "
        f"so every app placed here would run twice. Give each device its own data "
        f"directory (a new key, admitted with its own ticket), then delete "
        f"{data_dir / CLASH_FILE} on the one device that keeps this identity"
    )


def check_no_clash(data_dir: Path) -> None:
    """Refuse to start (:class:`IdentityClashError`) while :data:`CLASH_FILE` says this
    node's key was seen signing elsewhere."""
    path = data_dir / CLASH_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IdentityClashError(f"cannot read {path}: {exc}") from exc
    try:
        report_slot = int(json.loads(text)["report_slot"])
    except (ValueError, KeyError, TypeError):
        report_slot = -1
    raise IdentityClashError(describe_clash(data_dir, report_slot))
