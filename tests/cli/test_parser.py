"""The command table ``main`` uses to build only the parser a command needs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edgechain.cli import COMMAND_MODULES, build_parser


def get_command_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise AssertionError("no subcommands")


def test_the_table_names_every_command_in_help_order() -> None:
    assert get_command_names(build_parser()) == list(COMMAND_MODULES)


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_one_command_s_parser_holds_only_its_module_s_commands(command: str) -> None:
    names = get_command_names(build_parser(command))
    assert command in names
    assert {COMMAND_MODULES[name] for name in names} == {COMMAND_MODULES[command]}


@pytest.mark.parametrize(
    "argv",
    [
        ["node", "--data-dir", "/tmp/x", "--committee", "7", "--seeds", "127.0.0.1:1"],
        ["node", "leave", "--data-dir", "/tmp/x"],
        ["testnet", "--nodes", "3", "--slots", "4"],
        ["apps", "list", "--json"],
        ["status"],
        ["simulate", "--nodes", "4"],
    ],
)
def test_one_command_s_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    whole = vars(build_parser().parse_args(argv))
    one = vars(build_parser(argv[0]).parse_args(argv))
    assert one == whole


def test_a_node_process_does_not_load_the_launcher_or_the_simulator() -> None:
    # What `edgechain node` imports before it runs: the node's modules, not the lab's.
    code = (
        "import sys; from edgechain.cli import build_parser; build_parser('node'); "
        "import edgechain.node_daemon; "
        "print(sorted(m for m in sys.modules if m.startswith(('edgechain.lab', "
        "'edgechain.sim', 'edgechain.cli.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['edgechain.cli.common', 'edgechain.cli.node']"
