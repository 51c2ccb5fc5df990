"""lab/balance_setup.py: batches of submissions land whole, what a producer skipped is
sent again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from edgechain.lab.balance_setup import submit_specs
from edgechain.lab.faults_live import LiveTestnet


class FakeChain:
    """``apps submit F... --no-wait`` answered as the CLI does (one entry per file, with
    consecutive seqs), a chain that applies every command except the names in ``lost``
    (once each: a producer without them included the later ones), GET /apps and GET
    /operators/{key}."""

    def __init__(self, lost: set[str]) -> None:
        self.lost = lost
        self.last_seq = 0
        self.apps: list[dict[str, Any]] = []
        self.calls: list[list[str]] = []

    def check_alive(self) -> None:
        pass

    def get(self, path: str) -> Any:
        if path == "/apps":
            return list(self.apps)
        assert path == "/operators/" + "ab" * 48
        return {"last_seq": self.last_seq}

    def cli(self, *argv: str, client: Path | None = None, timeout_s: float = 0) -> Any:
        assert argv[:2] == ("apps", "submit") and argv[-1] == "--no-wait"
        names = [Path(f).stem for f in argv[2:-1]]
        self.calls.append(names)
        answer = []
        for name in names:
            self.last_seq += 1
            answer.append({"name": name, "seq": self.last_seq, "signer": "ab" * 48})
            if name in self.lost:
                self.lost.discard(name)
                continue
            self.apps.append({"name": name, "app_id": f"{self.last_seq:064x}", "created_slot": 1})
        return answer if len(names) > 1 else answer[0]


def test_a_submission_a_producer_skipped_is_sent_again_alone() -> None:
    specs = {f"app-{i:03d}": Path(f"app-{i:03d}.yaml") for i in range(120)}
    net = FakeChain(lost={"app-058", "app-119"})
    ids = submit_specs(cast(LiveTestnet, net), specs, Path("client.toml"), 30.0, print)
    assert sorted(ids) == sorted(specs)
    assert [len(c) for c in net.calls[:3]] == [50, 50, 20]
    # Each lost one again, on its own; none twice on chain.
    assert sorted(net.calls[3:]) == [["app-058"], ["app-119"]]
    assert len(net.apps) == 120


class BlockBetweenReads(FakeChain):
    """A chain whose block with the submissions lands right after the first read that
    follows them: between the loop's two reads, whichever comes first."""

    def __init__(self) -> None:
        super().__init__(lost=set())
        self.pending: list[dict[str, Any]] = []
        self.applied_seq = 0

    def get(self, path: str) -> Any:
        answer = (
            list(self.apps) if path == "/apps" else {"last_seq": self.applied_seq}
        )  # the state before the block
        if self.pending:
            self.apps += self.pending
            self.pending = []
            self.applied_seq = self.last_seq
        return answer

    def cli(self, *argv: str, client: Path | None = None, timeout_s: float = 0) -> Any:
        before = len(self.apps)
        answer = super().cli(*argv, client=client, timeout_s=timeout_s)
        self.pending += self.apps[before:]  # sent, not yet in a block
        del self.apps[before:]
        return answer


def test_a_block_between_the_reads_does_not_make_a_submission_look_spent() -> None:
    # Read the apps first and the signer's last seq second, and the block landing in
    # between shows the submissions missing with their seqs spent: sent again, every
    # app twice (session 46, a fleet-claim run: 16 apps for 8).
    specs = {f"app-{i}": Path(f"app-{i}.yaml") for i in range(8)}
    net = BlockBetweenReads()
    ids = submit_specs(cast(LiveTestnet, net), specs, Path("client.toml"), 30.0, print)
    assert sorted(ids) == sorted(specs)
    assert len(net.calls) == 1 and len(net.apps) == 8
