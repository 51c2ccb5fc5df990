"""The sample apps stay readable for the app user of a root node, wherever the checkout."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from edgechain.runtime.appuser import is_open_to_others
from edgechain.runtime.samples import get_apps_dir, get_shared_copy

REPO_APPS = Path(__file__).resolve().parents[2] / "apps"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root node drops apps to another user")
def test_a_closed_checkout_gets_a_shared_readable_copy() -> None:
    closed = Path(tempfile.mkdtemp())  # 0700, like a checkout in `mktemp -d`
    try:
        source = closed / "apps"
        (source / "counter").mkdir(parents=True)
        script = source / "counter" / "counter.sh"
        script.write_text("echo hi\n")
        assert not is_open_to_others(source)
        copy = get_shared_copy(source)
        assert is_open_to_others(copy)
        assert (copy / "counter" / "counter.sh").read_text() == "echo hi\n"
        assert stat.S_IMODE((copy / "counter" / "counter.sh").stat().st_mode) == 0o644
        assert copy.stat().st_uid == 0
        assert get_shared_copy(source) == copy  # one copy per content
        script.write_text("echo changed\n")
        assert get_shared_copy(source) != copy
    finally:
        shutil.rmtree(closed, ignore_errors=True)


def test_the_apps_dir_holds_the_samples_and_is_open_to_others() -> None:
    apps = get_apps_dir()
    assert (apps / "counter" / "counter.sh").read_bytes() == (
        REPO_APPS / "counter" / "counter.sh"
    ).read_bytes()
    if os.geteuid() == 0:
        assert is_open_to_others(apps)
