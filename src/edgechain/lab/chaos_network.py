"""Packet filter faults in the testnet's namespaces (iptables inside each node's
network namespace, ``lab/netns.py``): install a fault's DROP rules, heal them all.

Each namespace gets its own chain (:data:`~edgechain.lab.chaos_faults.CHAIN`) that its
INPUT jumps to, so a heal is one flush per namespace and nothing else in the
namespace's tables is touched. Needs root and iptables (the nf_tables or legacy
front end alike: only ``-N``, ``-I``, ``-A`` and ``-F`` are used); a failure raises
:class:`~edgechain.lab.netns.NetnsError`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from edgechain.lab.chaos_faults import CHAIN, DropRule
from edgechain.lab.netns import run_ip


def get_unavailable_reason() -> str | None:
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    return None


class PacketFilter:
    """The chaos chains of one testnet's namespaces."""

    def __init__(self, namespaces: Sequence[str]) -> None:
        self.namespaces = tuple(namespaces)
        self.dirty: set[int] = set()

    def setup(self) -> None:
        """An empty chaos chain in every namespace, jumped to first from INPUT."""
        for index in range(len(self.namespaces)):
            self._iptables(index, "-N", CHAIN)
            self._iptables(index, "-I", "INPUT", "1", "-j", CHAIN)

    def apply(self, rules: Sequence[DropRule]) -> None:
        for rule in rules:
            self.dirty.add(rule.node)
            self._iptables(rule.node, "-A", CHAIN, *rule.to_iptables())

    def heal(self) -> None:
        """Flush the chaos chain of every namespace a rule went into."""
        for index in sorted(self.dirty):
            self._iptables(index, "-F", CHAIN)
        self.dirty.clear()

    def _iptables(self, index: int, *args: str) -> None:
        run_ip(["netns", "exec", self.namespaces[index], "iptables", "-w", *args])
