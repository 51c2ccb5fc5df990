"""What the API needs from a node: the node's public interface, as a Protocol.

``edgechain.node.Node`` implements it; the API's unit tests use a fake. Getters return
chain objects or plain JSON-able data, ``submit_*`` raise the node's and engine's own
errors (``ValidationError`` with a ``reason``, ``NoOperatorKeyError``), which the routes
map to HTTP statuses.
"""

from __future__ import annotations

from typing import Any, Protocol

from edgechain.chain.model import AppSpec, ChainParams, SignedCommand
from edgechain.consensus.command_status import CommandStatus
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import BlockState
from edgechain.node import ChainEntry, CommandReceipt
from edgechain.orchestrator.fleet import HistoryEvent
from edgechain.types import AppId


class NodeInterface(Protocol):
    def is_ready(self) -> bool:
        """False until the node runs (the API answers 503 meanwhile)."""
        ...

    def get_status(self, cpu_since_slot: int | None = None) -> dict[str, Any]: ...

    def get_params(self) -> ChainParams | None: ...

    def get_head_state(self) -> BlockState | None: ...

    def get_app_history(self, app: AppId) -> list[HistoryEvent]:
        """What the chain did to ``app``, in chain order: its finalized history (kept
        in the node's store, memory prunes it) and the head chain's after it."""
        ...

    def get_blocks(self, since: int, limit: int) -> list[dict[str, Any]]: ...

    def get_chain(self) -> list[dict[str, Any]]: ...

    def get_runtime_apps(self) -> list[dict[str, Any]]: ...

    def get_app_log(self, app: AppId, lines: int) -> dict[str, Any] | None:
        """The last ``lines`` lines of ``app``'s output on this node (``app_id``,
        ``node_id``, ``running``, ``lines``, ``truncated``); None when it has none here.
        ``AppRuntimeError`` when the container engine cannot say."""
        ...

    def get_now_ms(self) -> int:
        """The node's clock (epoch ms, with its ``--clock-offset-ms``)."""
        ...

    def get_migrations(self) -> list[dict[str, Any]]: ...

    def get_metrics_text(self) -> bytes:
        """The Prometheus exposition of the node's metrics."""
        ...

    def get_overview(self) -> dict[str, Any]:
        """``node_id``, ``public_key`` (hex), ``peers``, ``rss_mb``: cheap, for the
        dashboard."""
        ...

    def get_recent_chain(self, count: int) -> list[ChainEntry]:
        """The last ``count`` blocks of the head chain (genesis exclusive), oldest
        first, with each parent's state."""
        ...

    def get_slot_roles(self) -> tuple[int, Roles | None]:
        """The current slot and its elected roles (None when there are none)."""
        ...

    def get_command_status(self, digest: bytes) -> CommandStatus:
        """Where the command hashing to ``digest`` stands on this node."""
        ...

    def submit_command(self, command: SignedCommand) -> CommandReceipt:
        """Check (against the head state), keep and gossip a signed command."""
        ...

    def submit_app(self, spec: AppSpec) -> CommandReceipt:
        """Sign a SUBMIT of ``spec`` with the node's operator key and submit it."""
        ...

    def leave(self) -> dict[str, Any]:
        """Start leaving the network (drain, exit, stop); the leave's progress."""
        ...
