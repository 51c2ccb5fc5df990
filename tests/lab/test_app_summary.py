"""The testnet summary's apps: where each ran and how it moved (pure)."""

from __future__ import annotations

from edgechain.lab.apps import format_app_line, summarize_apps

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32
NAMES = {A: "node-000", B: "node-001", C: "node-002"}
APP = "12" * 32


def _view(node: str | None, state: str = "running") -> dict[str, object]:
    return {"app_id": APP, "name": "counter", "state": state, "version": 2, "node": node}


def test_apps_summary_follows_the_history() -> None:
    events = [
        {"slot": 4, "kind": "submit", "signer": "ab" * 48, "version": 1},
        {"slot": 5, "kind": "place", "node": A},
        {"slot": 9, "kind": "update", "version": 2},
        {"slot": 12, "kind": "move", "node": C},
        {"slot": 13, "kind": "migrate", "node": C, "origin": A},
    ]
    migrations = {
        "node-000": [
            {"app": APP[:16], "slot": 13, "to": C[:16], "outcome": "failed", "save_ms": 1.0},
            {
                "app": APP[:16],
                "slot": 13,
                "to": C[:16],
                "outcome": "completed",
                "save_ms": 10.0,
                "transmit_ms": 2.5,
                "resume_ms": 30.0,
                "raw_bytes": 10240,
            },
            {"app": "99" * 8, "slot": 7, "outcome": "completed"},
        ],
        "node-001": None,
    }
    apps = summarize_apps([_view(C)], {APP: {"app_id": APP, "events": events}}, migrations, NAMES)
    assert apps is not None
    [app] = apps
    assert app["node"] == "node-002"
    assert app["path"] == ["node-000", "node-002"]
    assert app["events"][4] == {
        "slot": 13,
        "kind": "migrate",
        "node": "node-002",
        "origin": "node-000",
    }
    assert [(m["outcome"], m["to"], m["total_ms"]) for m in app["migrations"]] == [
        ("failed", "node-002", 1.0),
        ("completed", "node-002", 42.5),
    ]
    line = format_app_line(app)
    assert line.startswith("counter  121212121212  running on node-002 v2: ")
    assert "node-000 @5 -> [update @9] -> [move @12] -> node-002 @13" in line
    assert line.endswith("(migrations 42.5 ms)")


def test_apps_summary_without_answers() -> None:
    assert summarize_apps(None, {}, {}, NAMES) is None
    queued = {"app_id": APP, "events": [{"slot": 4, "kind": "submit", "version": 1}]}
    apps = summarize_apps([_view(None, "queued")], {APP: queued}, {}, NAMES)
    assert apps is not None
    [app] = apps
    assert app["path"] == [] and app["node"] is None
    assert "never placed" in format_app_line(app)
    # No node answered with its history (one that failed with a 500 after pruning
    # did): nothing is known of its path, which is not "never placed".
    [app] = summarize_apps([_view(C)], {APP: None}, {}, NAMES) or []
    assert app["history_collected"] is False and app["events"] == []
    line = format_app_line(app)
    assert "never placed" not in line and line.endswith("history not collected")
