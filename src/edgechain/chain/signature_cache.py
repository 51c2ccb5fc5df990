"""Signatures a node has itself verified, so that nothing is verified twice.

A report or command checked when it arrived over the overlay is not checked again
inside the block that carries it; a block's BLS signatures are checked in one
randomised multi-pairing where the node holds a secret for the batch's scalars
(``bls.batch_verify``). Split out of ``chain/validation.py``, which uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgechain.crypto import bls, report_key


@dataclass
class SignatureCache:
    """Signatures this node has itself verified, by digest of (key, message, signature).

    A report a committee member verified when it arrived over the overlay need not be
    verified again inside the block. A real node only ever caches its own results (the
    simulator may share one cache between simulated nodes, DESIGN.md "Scale path").
    """

    randomness: bytes = b""
    """Secret for batch verification (see ``bls.batch_verify``); a node derives it from
    its key so that no peer can predict the batch's random scalars."""
    max_entries: int = 1 << 13
    """Cleared when full: under 1 MB (a slot adds one entry per report and vote, ~13
    at 20 nodes, so a few hundred slots), where 2**18 let a node's RSS climb by 25 MB
    before the first clear. Only the last few slots' entries are ever looked up."""
    _seen: set[bytes] = field(default_factory=set)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = _get_signature_entry(public_key, message, signature)
        if key in self._seen:
            return True
        if not bls.verify(public_key, message, signature):
            return False
        self._remember(key)
        return True

    def verify_batch(
        self, items: Sequence[tuple[bytes, bytes, bytes]], *, pops: Sequence[bool] = ()
    ) -> list[bool]:
        """Verify many signatures at once; one bad signature costs a one-by-one pass.

        ``pops[i]``: item ``i`` is a proof of possession ``(key, key, proof)``, checked
        under its own domain tag and remembered as :meth:`verify_pop` remembers it.
        """
        is_pop = list(pops) if pops else [False] * len(items)
        keys = [
            _get_pop_entry(pk, sig) if pop else _get_signature_entry(pk, m, sig)
            for (pk, m, sig), pop in zip(items, is_pop, strict=True)
        ]
        todo = [i for i, key in enumerate(keys) if key not in self._seen]
        dsts = [bls.DST_POP if is_pop[i] else bls.DST_SIGNATURE for i in todo]
        # One left (the rest were cached): a plain check, which skips the batch's
        # scalar multiplications.
        if len(todo) > 1 and bls.batch_verify([items[i] for i in todo], self.randomness, dsts):
            for i in todo:
                self._remember(keys[i])
            todo = []
        results = [True] * len(items)
        for i in todo:
            pk, m, sig = items[i]
            results[i] = self.verify_pop(pk, sig) if is_pop[i] else self.verify(pk, m, sig)
        return results

    def verify_reports(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """Ed25519 report signatures ``(report key, message, signature)``, one by one
        (libsodium has no batch check; one costs about 0.1 ms, a BLS one 2 ms)."""
        results = []
        for public_key, message, signature in items:
            key = _get_report_entry(public_key, message, signature)
            ok = key in self._seen
            if not ok and report_key.verify_report_signature(public_key, message, signature):
                self._remember(key)
                ok = True
            results.append(ok)
        return results

    def add_own_report(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Record a report this node just signed itself."""
        self._remember(_get_report_entry(public_key, message, signature))

    def verify_pop(self, public_key: bytes, proof: bytes) -> bool:
        """A proof of possession, remembered like a signature."""
        key = _get_pop_entry(public_key, proof)
        if key in self._seen:
            return True
        if not bls.pop_verify(public_key, proof):
            return False
        self._remember(key)
        return True

    def _remember(self, key: bytes) -> None:
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        self._seen.add(key)


def _get_signature_entry(public_key: bytes, message: bytes, signature: bytes) -> bytes:
    """A BLS signature's entry in the cache."""
    return hashlib.sha256(public_key + message + signature).digest()


def _get_pop_entry(public_key: bytes, proof: bytes) -> bytes:
    """A proof of possession's entry in the cache (its own domain: not a signature's)."""
    return hashlib.sha256(b"pop" + public_key + proof).digest()


def _get_report_entry(public_key: bytes, message: bytes, signature: bytes) -> bytes:
    """A report signature's entry in the cache (its own domain: not a BLS signature's)."""
    return hashlib.sha256(b"report" + public_key + message + signature).digest()


def verify_with(cache: SignatureCache | None, pk: bytes, message: bytes, sig: bytes) -> bool:
    return cache.verify(pk, message, sig) if cache else bls.verify(pk, message, sig)
