"""lab/balance_setup.py: a double submission is undone through the CLI, oldest kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from edgechain.lab.balance_setup import remove_doubles
from edgechain.lab.faults_live import LiveTestnet


class FakeNet:
    """The two calls remove_doubles makes: GET /apps and ``edgechain apps rm``."""

    def __init__(self, apps: list[dict[str, Any]]) -> None:
        self.apps = apps
        self.calls: list[tuple[str, ...]] = []

    def get(self, path: str) -> Any:
        assert path == "/apps"
        return list(self.apps)

    def cli(self, *argv: str, client: Path | None = None) -> Any:
        self.calls.append(argv)
        self.apps = [a for a in self.apps if a["app_id"] != argv[-1]]
        return {"applied": True}


def test_the_later_copies_of_a_name_are_removed() -> None:
    net = FakeNet(
        [
            {"name": "web", "app_id": "bb" * 32, "created_slot": 9},
            {"name": "web", "app_id": "aa" * 32, "created_slot": 7},
            {"name": "db", "app_id": "cc" * 32, "created_slot": 8},
            {"name": "web", "app_id": "dd" * 32, "created_slot": 9},
        ]
    )
    logged: list[str] = []
    remove_doubles(cast(LiveTestnet, net), Path("client.toml"), logged.append)
    assert net.calls == [("apps", "rm", "bb" * 32), ("apps", "rm", "dd" * 32)]
    assert sorted(a["app_id"] for a in net.apps) == ["aa" * 32, "cc" * 32]
    assert len(logged) == 2 and "web was submitted twice" in logged[0]


def test_nothing_happens_without_doubles() -> None:
    net = FakeNet([{"name": "web", "app_id": "aa" * 32, "created_slot": 7}])
    remove_doubles(cast(LiveTestnet, net), Path("client.toml"), print)
    assert net.calls == []
