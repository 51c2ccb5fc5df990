"""The node: one asyncio loop driving the consensus engine, the DHT and gossip over real
sockets (``node.py``), and the collaborators it owns, one job each:

* ``config.py``: ``NodeConfig`` and the engine it configures (read once, at start);
* ``vdf_worker.py``: VDF evaluations on their own thread, stopped when no longer wanted;
* ``events.py``: the engine's events into the store, the accepted-blocks log and the
  JSON log lines (with each duty the node performs);
* ``duty.py``: which scheduling priority the node's duties get now (the pure
  ``choose_duty_nice``) and applying it, on the OS calls of ``priority.py``;
* ``routing.py``: where a peer is reached (its registered address, the DHT, the
  last datagram) and what DHT envelopes carry (session MAC or signature);
* ``inbox.py``: what arrives on the sockets, decoded and handed to its part;
* ``contacts.py``: joining the DHT, pinging the seeds, probing round trips;
* ``queries.py``: the read side of the public interface (``get_*``);
* ``submissions.py``: the write side (``submit_*``: commands into the engine);
* ``archive.py``: what the store keeps for finality and checkpoint sync, the answers
  to peers syncing pruned history, and a restart's replay;
* ``cpu.py``: the CPU budget per slot (``telemetry/cpu.py``);
* ``tick_schedule.py``: when the loop's next pass is due; the housekeeping grid;
* ``clock.py``: every wall-clock read (``--clock-offset-ms``);
* ``log_format.py``: JSON-line logs.

``node_daemon.py`` (above ``api/``) builds the process: a node with its API server.
"""

from edgechain.node.config import NodeConfig
from edgechain.node.log_format import configure_logging
from edgechain.node.node import Node
from edgechain.node.queries import ChainEntry
from edgechain.node.submissions import CommandReceipt, NoOperatorKeyError

__all__ = [
    "ChainEntry",
    "CommandReceipt",
    "Node",
    "NodeConfig",
    "NoOperatorKeyError",
    "configure_logging",
]
