"""lab/package_sources.py: the digest of the sources and their bytecode, written even
where the environment says never to write bytecode (``PYTHONDONTWRITEBYTECODE``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgechain.lab.package_sources import compile_package, compute_source_digest


def test_bytecode_is_written_even_when_imports_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "sub" / "mod.py").write_text("def f() -> int:\n    return 2\n")
    assert compile_package(package)
    written = sorted(p.name.split(".")[0] for p in package.rglob("__pycache__/*.pyc"))
    assert written == ["__init__", "mod"]
    before = compute_source_digest(package)
    (package / "sub" / "mod.py").write_text("def f() -> int:\n    return 3\n")
    assert compute_source_digest(package) != before


def test_a_tree_it_cannot_fully_compile_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "ro"
    package.mkdir()
    (package / "bad.py").write_text("def broken(:\n")  # the nodes would fail on it too
    assert not compile_package(package)
