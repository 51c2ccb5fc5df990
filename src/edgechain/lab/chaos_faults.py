"""The faults of a chaos run (``edgechain chaos``, :mod:`edgechain.lab.chaos`): what
each kind does, the seeded schedule, and the packet filter rules a network fault puts
in the nodes' namespaces. Pure: nothing here touches a process or a namespace
(``lab/chaos_network.py`` and ``lab/chaos.py`` do).

Kinds (issue 12):

* ``kill`` — a device crash: the node, its watchdog and its apps are stopped at once
  and SIGKILLed; the node is restarted on its data directory when the fault ends.
* ``pause`` — SIGSTOP of the node process alone (its watchdog and apps run on, as on a
  wedged node), SIGCONT when the fault ends.
* ``partition-halves``, ``partition-minority``, ``isolate``, ``ring`` — iptables DROP
  rules in the namespaces: two halves; a minority (fewer than a third) cut from the
  rest; one node cut from all; a ring where each node hears only its two neighbours.
* ``one-way-loss`` — one node loses a share of the packets it receives from everyone
  (``-m statistic``); what it sends still arrives.
* ``clock-skew`` — the node is stopped and restarted with ``--clock-offset-ms`` of
  0.5-3 s either way (its watchdog follows), and restarted without at the end.
* ``leave`` — the node leaves on purpose (``edgechain node leave``: drain, exit, stop)
  and is started again on its data directory the fault's length after it stopped; it
  must be a validator again, and stay one (CI at stop 47 saw a node restarted a few
  seconds after its leave removed again by its own old exit).
* ``watchdog-kill`` — the node's fencing watchdog is SIGKILLed; once the node has
  started a new one (``lab/chaos_watchdog.py``) the node is paused as by ``pause``:
  the new watchdog must fence its apps.
* ``full-disk`` — the file system of the one node whose data directory is a small
  disk of its own (``lab/small_disk.py``) is filled; the node must stop cleanly (exit
  75) or go on, and keep every block it accepted; the filler is deleted at the end
  and a stopped node restarted.

Faults never overlap: each starts once the invariants after the previous one were
measured (``lab/chaos.py``), so every re-convergence time belongs to one fault.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

KILL = "kill"
PAUSE = "pause"
PARTITION_HALVES = "partition-halves"
PARTITION_MINORITY = "partition-minority"
ISOLATE = "isolate"
RING = "ring"
ONE_WAY_LOSS = "one-way-loss"
CLOCK_SKEW = "clock-skew"
FULL_DISK = "full-disk"
LEAVE = "leave"
WATCHDOG_KILL = "watchdog-kill"

PROCESS_KINDS = (KILL, PAUSE, CLOCK_SKEW, FULL_DISK, LEAVE, WATCHDOG_KILL)
NETWORK_KINDS = (PARTITION_HALVES, PARTITION_MINORITY, ISOLATE, RING, ONE_WAY_LOSS)
ALL_KINDS = (*PROCESS_KINDS, *NETWORK_KINDS)

CHAIN = "ECCHAOS"
"""The iptables chain each namespace's INPUT jumps to; a heal flushes it."""

LOSS_PROBABILITY = 0.6
"""The share of packets a one-way-loss victim drops."""


class FaultError(ValueError):
    """A fault that cannot be built for this testnet (an unknown kind, too few nodes)."""


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the nodes it acts on and how long it lasts."""

    number: int
    kind: str
    duration_slots: int
    targets: tuple[int, ...]
    """Node indices the fault acts on (for a partition: one side; ring: every node)."""
    loss: float = 0.0
    """One-way loss only: the share of packets dropped."""
    offset_ms: int = 0
    """Clock skew only: the node's clock offset during the fault."""

    def describe(self) -> str:
        nodes = ",".join(f"node-{i:03d}" for i in self.targets)
        extra = f" loss {self.loss:.0%}" if self.kind == ONE_WAY_LOSS else ""
        if self.kind == CLOCK_SKEW:
            extra = f" offset {self.offset_ms:+d} ms"
        return f"#{self.number} {self.kind} {nodes} for {self.duration_slots} slots{extra}"


@dataclass(frozen=True)
class DropRule:
    """In node ``node``'s namespace, drop what arrives from ``source`` (an address),
    with ``probability`` (1: always)."""

    node: int
    source: str
    probability: float = 1.0

    def to_iptables(self) -> list[str]:
        """The arguments after ``iptables -w -A <CHAIN>``."""
        args = ["-s", self.source]
        if self.probability < 1.0:
            args += [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{self.probability:.4f}",
            ]
        return [*args, "-j", "DROP"]


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise FaultError(f"fault kinds must be among {', '.join(ALL_KINDS)}; got {list(kinds)}")
    return tuple(dict.fromkeys(kinds))


def draw_fault(
    rng: random.Random, number: int, kind: str, nodes: int, disk_node: int | None = None
) -> Fault:
    """One fault of ``kind`` on a testnet of ``nodes`` nodes, its targets and length
    drawn from ``rng``; ``disk_node``: the node on a small disk (full-disk faults)."""
    if nodes < 4:
        raise FaultError(f"chaos needs at least 4 nodes, not {nodes}")
    everyone = list(range(nodes))
    offset = 0
    if kind == FULL_DISK:
        if disk_node is None:
            raise FaultError("a full-disk fault needs a node on a small disk")
        targets: tuple[int, ...] = (disk_node,)
    elif kind in (KILL, PAUSE, ISOLATE, ONE_WAY_LOSS, CLOCK_SKEW, LEAVE, WATCHDOG_KILL):
        targets = (rng.randrange(nodes),)
        if kind == CLOCK_SKEW:
            offset = rng.choice((-1, 1)) * rng.randint(500, 3_000)
    elif kind == PARTITION_HALVES:
        targets = tuple(sorted(rng.sample(everyone, nodes // 2)))
    elif kind == PARTITION_MINORITY:
        size = max(1, (nodes - 1) // 3)
        targets = tuple(sorted(rng.sample(everyone, rng.randint(1, size))))
    elif kind == RING:
        targets = tuple(everyone)
    else:
        raise FaultError(f"unknown fault kind {kind!r}")
    # Long enough to matter (a lost slot or more), short of the K slots after which a
    # node is down and its apps recovered elsewhere: the quick faults a device sees
    # most (--fault-slots sets a length for all, e.g. the 20-slot partition).
    duration = rng.randint(2, 5)
    loss = LOSS_PROBABILITY if kind == ONE_WAY_LOSS else 0.0
    return Fault(number, kind, duration, targets, loss, offset)


def compute_drop_rules(fault: Fault, addresses: Sequence[str]) -> list[DropRule]:
    """The DROP rules a network fault installs (empty for a process fault).

    Partitions drop both ways (each side's namespaces drop the other side's sources),
    which is what a cut cable does; one-way loss drops only inbound at the victim.
    Packets from the bridge address (the launcher and the CLI on the host) are never
    dropped: the harness keeps watching every node through the fault.
    """
    nodes = len(addresses)
    if fault.kind in (PARTITION_HALVES, PARTITION_MINORITY, ISOLATE):
        side = set(fault.targets)
        other = [i for i in range(nodes) if i not in side]
        rules = [DropRule(a, addresses[b]) for a in side for b in other]
        rules += [DropRule(b, addresses[a]) for b in other for a in side]
        return sorted(rules, key=lambda r: (r.node, r.source))
    if fault.kind == RING:
        rules = []
        for a in range(nodes):
            neighbours = {(a - 1) % nodes, (a + 1) % nodes}
            rules += [
                DropRule(a, addresses[b]) for b in range(nodes) if b != a and b not in neighbours
            ]
        return rules
    if fault.kind == ONE_WAY_LOSS:
        (victim,) = fault.targets
        return [DropRule(victim, addresses[b], fault.loss) for b in range(nodes) if b != victim]
    return []


def get_cut_off(fault: Fault, nodes: int) -> tuple[int, ...]:
    """The nodes a fault takes out of the majority's sight (their apps may be fenced):
    the minority side of a partition, the killed, paused or isolated node."""
    if fault.kind in (KILL, PAUSE, ISOLATE, CLOCK_SKEW, FULL_DISK, WATCHDOG_KILL):
        return fault.targets
    if fault.kind in (PARTITION_HALVES, PARTITION_MINORITY):
        side = set(fault.targets)
        other = tuple(i for i in range(nodes) if i not in side)
        # Halves of an even testnet: neither side has a strict majority.
        return fault.targets if len(side) <= len(other) else other
    return ()
