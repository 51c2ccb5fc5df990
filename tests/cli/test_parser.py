"""The command table ``main`` uses to build only the parser a command needs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edgechain.cli import COMMAND_MODULES, build_parser, get_command


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
        ["--client", "c.toml", "apps", "list", "--json"],
        ["--client=c.toml", "--timeout", "3", "--json", "nodes"],
        ["--json", "--no-wait", "--http-timeout", "2", "command", "ab"],
    ],
)
def test_one_command_s_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    command = get_command(argv)
    assert command is not None and command in argv
    whole = vars(build_parser().parse_args(argv))
    one = vars(build_parser(command).parse_args(argv))
    assert one == whole


@pytest.mark.parametrize(
    "argv",
    [[], ["--help"], ["--json"], ["bogus", "apps"], ["--timeout", "soon", "apps", "list"],
     ["--client"], ["--client", "apps"]],
)  # fmt: skip
def test_without_a_command_after_valid_options_the_whole_parser_answers(argv: list[str]) -> None:
    # --help lists every command; a mistake gets the whole parser's message.
    assert get_command(argv) is None


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


def test_a_client_call_with_options_first_loads_only_the_client() -> None:
    # How scripts and the live tests call it: `edgechain --client F apps list`. The whole
    # parser would import the simulator, the launcher and the node (about 0.5 s of CPU
    # a call against 0.15 s).
    code = (
        "import sys; from edgechain import cli; "
        "cli.main(['--client', '/nonexistent/client.toml', 'apps', 'list']); "
        "print(sorted(m for m in sys.modules if m.startswith(('edgechain.lab.testnet', "
        "'edgechain.sim', 'edgechain.node.', 'edgechain.cli.simulate'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
