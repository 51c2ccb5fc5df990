"""``edgechain testnet``: a network of real node processes here (``lab/testnet.py``)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edgechain.lab.testnet import add_testnet_parser

    add_testnet_parser(sub)
