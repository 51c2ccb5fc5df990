"""The dashboard in a real browser (headless Chromium) against a live 5-node testnet.

``edgechain testnet --forever`` (5 node processes, committee 2, 1 s slots) and node 0's
``/dashboard``: the page lists the 5 nodes and follows the head over server-sent events;
an app submitted through the CLI appears in its node's bar; ``edgechain apps move``
shows as a migration with the origin's timings (the app is first moved onto node 0
when the planner put it elsewhere, so that the migration watched is one node 0 measures)
and the app's segment moves to the destination's bar, until the destination reports it
running. Then a phone's screen, and a page without ``EventSource`` that falls back to
polling.

Screenshots go to pytest's ``tmp_path`` (``initial``, ``submitted``, ``moved``,
``phone``); with ``EDGECHAIN_SAVE_SCREENSHOT=1`` the last desktop one is also copied to
``docs/dashboard.png``. Skipped only without ``/usr/bin/chromium`` or
``/usr/bin/chromedriver``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

import pytest
from cli.live_testnet import LiveTestnet

from edgechain.runtime.samples import get_apps_dir

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NODES = 5
SETUP_TIMEOUT_S = 180.0
STEP_TIMEOUT_S = 60.0
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
DESKTOP = (1366, 900)
PHONE = (390, 844)

pytestmark = [
    pytest.mark.xdist_group("testnet"),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: chromium, chromium-driver)",
    ),
]

T = TypeVar("T")

# What the tests read of the page: plain data, read in one go (the page rebuilds its
# lists at every snapshot, so element handles would go stale).
READ_PAGE = """
const text = (id) => document.getElementById(id).textContent;
const nodes = [...document.querySelectorAll('#node-list [data-node-id]')].map((n) => ({
  id: n.dataset.nodeId,
  role: n.dataset.role,
  status: n.dataset.status,
  apps: [...n.querySelectorAll('.bar [data-app-id]')].map((s) => s.dataset.appId),
  reported: [...n.querySelectorAll('.bar [data-reported="yes"]')].map((s) => s.dataset.appId),
}));
const migrations = [...document.querySelectorAll('#migrations [data-app-id]')].map((m) => ({
  app: m.dataset.appId,
  action: m.dataset.action,
  from: m.dataset.from || null,
  to: m.dataset.to,
  timings: m.querySelector('.timings') ? m.querySelector('.timings').textContent : '',
}));
return {
  connection: document.getElementById('connection').dataset.state,
  head_slot: parseInt(text('head-slot'), 10),
  current_slot: parseInt(text('current-slot'), 10),
  node_id: text('node-id'),
  nodes,
  migrations,
  apps: [...document.querySelectorAll('#apps [data-app-id]')].map((a) => a.dataset.appId),
  blocks: document.querySelectorAll('#block-strip [data-kind="block"]').length,
  overflow: document.documentElement.scrollWidth > window.innerWidth,
  window_width: window.innerWidth,
  columns: getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length,
};
"""


def _spec_yaml(tag: str) -> str:
    """The app the test moves: a counter (stateful, next to no CPU)."""
    script = get_apps_dir() / "counter" / "counter.sh"
    return (
        "name: dashboard-demo\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "{script}", "0", "0.2", "{tag}"]\n'
        "cpu_bp: 10\n"
        "ram_bp: 10\n"
        "stateful: true\n"
    )


def _load_yaml() -> str:
    """A second app that uses some CPU (8 % of a testnet node's one declared core), so a
    bar has a segment of visible width."""
    script = get_apps_dir() / "cpu-load" / "cpu-load.sh"
    return (
        "name: dashboard-load\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "{script}", "8", "100"]\n'
        "cpu_bp: 800\n"
        "ram_bp: 10\n"
    )


class Browser:
    """Headless Chromium on the dashboard of one node."""

    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(executable_path=str(CHROMEDRIVER))
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_window_size(*DESKTOP)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.service.stop()

    def read(self) -> dict[str, Any]:
        page: dict[str, Any] = self.driver.execute_script(READ_PAGE)
        return page

    def wait(self, what: str, check: Callable[[dict[str, Any]], T | None], timeout: float) -> T:
        """Poll the page until ``check`` returns something (not None, not False)."""
        deadline = time.monotonic() + timeout
        page: dict[str, Any] = {}
        while time.monotonic() < deadline:
            page = self.read()
            found = check(page)
            if found is not None and found is not False:
                return found
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; the page shows {page}")

    def screenshot(self, path: Path) -> None:
        """The whole page, as wide as the window (or the phone emulated)."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def emulate_phone(self) -> None:
        """A phone's screen: its width and height, touch-style overlay scrollbars."""
        width, height = PHONE
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
        )

    def emulate_desktop(self) -> None:
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def errors(self) -> list[str]:
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(e["message"]) for e in entries if e["level"] == "SEVERE"]


@pytest.fixture
def testnet() -> Iterator[LiveTestnet]:
    """A running 5-node testnet, stopped (every node process) however the test ends."""
    base = Path(tempfile.mkdtemp(prefix="edgechain-dashboard-"))
    base.chmod(0o711)  # a root node runs apps as another user, who must reach the run dir
    net = LiveTestnet(base / "run", nodes=NODES)
    net.start()
    try:
        yield net
    finally:
        code, output = net.stop()
        if not os.environ.get("EDGECHAIN_KEEP_RUN"):
            shutil.rmtree(base, ignore_errors=True)
    assert code == 0, output


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    browser = Browser(tmp_path / "chromium-profile")
    try:
        yield browser
    finally:
        browser.quit()


def _short(node_or_app: str) -> str:
    return node_or_app[:16]


def _bars(page: dict[str, Any], key: str = "apps") -> dict[str, list[str]]:
    """Node -> the apps in its bar (``reported``: only those its latest report lists)."""
    return {n["id"]: n[key] for n in page["nodes"]}


def test_dashboard_follows_the_fleet(
    testnet: LiveTestnet, browser: Browser, tmp_path: Path
) -> None:
    testnet.wait_for(testnet.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
    first_url = tomllib.loads(testnet.client.read_text())["nodes"][0]
    with urlopen(f"{first_url}/status", timeout=10) as reply:
        node0 = json.load(reply)["node_id"]
    with urlopen(f"{first_url}/", timeout=10) as reply:  # the page at the root too
        assert b'src="/dashboard/app.js"' in reply.read()

    # The page: 5 nodes, live over server-sent events, the head moving on.
    browser.driver.get(f"{first_url}/dashboard")
    page = browser.wait(
        "5 nodes, live",
        lambda p: p if len(p["nodes"]) == NODES and p["connection"] == "live" else None,
        SETUP_TIMEOUT_S,
    )
    assert page["node_id"] == _short(node0)
    assert _short(node0) in {n["id"] for n in page["nodes"]}
    first_head = page["head_slot"]
    browser.wait("the head to advance", lambda p: p["head_slot"] >= first_head + 2, STEP_TIMEOUT_S)
    page = browser.wait("a producer and a committee", _with_roles, STEP_TIMEOUT_S)
    assert {n["status"] for n in page["nodes"]} == {"active"}
    assert page["blocks"] > 0 and not page["overflow"]
    browser.screenshot(tmp_path / "initial.png")

    # Submit through the CLI: each app shows in its node's bar.
    spec = tmp_path / "app.yaml"
    spec.write_text(_spec_yaml(f"dashboard-{os.getpid()}-{time.monotonic_ns()}"))
    load = tmp_path / "load.yaml"
    load.write_text(_load_yaml())
    app = testnet.app = testnet.cli("apps", "submit", str(spec))["app_id"]
    load_app = testnet.cli("apps", "submit", str(load))["app_id"]

    def placements() -> dict[str, str] | None:
        where = {a: testnet.cli("apps", "show", a)["node"] for a in (app, load_app)}
        return None if None in where.values() else where

    testnet.wait_for(lambda: placements() is not None, "placement", STEP_TIMEOUT_S)
    where = placements()
    assert where is not None
    placed = where[app]
    browser.wait(
        "the apps in their nodes' bars",
        lambda p: (
            all(_short(a) in _bars(p).get(_short(n), []) for a, n in where.items())
            and {_short(app), _short(load_app)} <= set(p["apps"])
        ),
        STEP_TIMEOUT_S,
    )
    browser.wait(
        "its placement in the migrations list",
        lambda p: any(m["app"] == _short(app) and m["action"] == "place" for m in p["migrations"]),
        STEP_TIMEOUT_S,
    )
    browser.screenshot(tmp_path / "submitted.png")

    # Node 0 measures the migrations it is the origin of: bring the app there first.
    if placed != node0:
        _move(testnet, browser, app, placed, node0)
    target = sorted(n for n in _node_ids(testnet) if n != node0)[0]
    page = _move(testnet, browser, app, node0, target)
    measured = browser.wait(
        "the migration's timings",
        lambda p: next(
            (
                m["timings"]
                for m in p["migrations"]
                if m["app"] == _short(app) and m["to"] == _short(target) and "save" in m["timings"]
            ),
            None,
        ),
        STEP_TIMEOUT_S,
    )
    assert "transmit" in measured and "resume" in measured and measured.startswith("completed")
    browser.wait(
        "the target to report the app running",
        lambda p: _short(app) in _bars(p, "reported").get(_short(target), []),
        STEP_TIMEOUT_S,
    )
    browser.screenshot(tmp_path / "moved.png")
    if os.environ.get("EDGECHAIN_SAVE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "moved.png", DOCS_SCREENSHOT)

    # A phone: one column, no horizontal scroll, the same content (drawn again at the
    # next snapshot).
    browser.emulate_phone()
    head = browser.read()["head_slot"]
    page = browser.wait(
        "a snapshot on the phone", lambda p: p if p["head_slot"] > head else None, STEP_TIMEOUT_S
    )
    assert not page["overflow"] and len(page["nodes"]) == NODES
    assert page["window_width"] == PHONE[0] and page["columns"] == 1
    browser.screenshot(tmp_path / "phone.png")
    assert browser.errors() == []

    # Without EventSource the page polls /dashboard/snapshot and still follows the head.
    browser.emulate_desktop()
    browser.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"}
    )
    browser.driver.get(f"{first_url}/dashboard")
    page = browser.wait(
        "polling", lambda p: p if p["connection"] == "polling" and p["nodes"] else None, 30
    )
    browser.wait(
        "the head to advance while polling",
        lambda p: p["head_slot"] > page["head_slot"],
        STEP_TIMEOUT_S,
    )
    assert browser.errors() == []


def _with_roles(page: dict[str, Any]) -> dict[str, Any] | None:
    """The page once the current slot has its producer and its committee of 2 (they are
    known while the slot's block is still to come, and after it)."""
    roles = [n["role"] for n in page["nodes"]]
    return page if roles.count("producer") == 1 and roles.count("committee") == 2 else None


def _node_ids(testnet: LiveTestnet) -> list[str]:
    manifest = json.loads((testnet.run_dir / "testnet.json").read_text())
    return [str(n["node_id"]) for n in manifest["nodes"]]


def _move(
    testnet: LiveTestnet, browser: Browser, app: str, origin: str, target: str
) -> dict[str, Any]:
    """``edgechain apps move`` and the dashboard showing it: the migration listed, the
    app's segment in the target's bar and, once the origin reported again, not in its."""
    assert testnet.cli("apps", "move", app, target[:12])["applied"]

    def moved(page: dict[str, Any]) -> dict[str, Any] | None:
        listed = any(
            m["app"] == _short(app)
            and m["action"] == "migrate"
            and m["from"] == _short(origin)
            and m["to"] == _short(target)
            for m in page["migrations"]
        )
        bars = _bars(page)
        here = _short(app) in bars.get(_short(target), [])
        gone = _short(app) not in bars.get(_short(origin), [])
        return page if listed and here and gone else None

    return browser.wait(f"the move of the app to {target[:8]}", moved, STEP_TIMEOUT_S)
