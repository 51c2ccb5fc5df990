"""App spec files: YAML or JSON, the same document either way (see ``api/schema.py``).

PyYAML is imported here only: the node and the protocol never parse YAML.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppSpec
from edgechain.cli.common import EXIT_USAGE, CliError

MAX_SPEC_FILE_BYTES = 1024 * 1024


def read_spec_document(path: str) -> Any:
    """The parsed document of ``path`` (``-``: standard input); JSON for ``.json``,
    else YAML (which also reads JSON)."""
    import yaml

    try:
        if path == "-":
            text = sys.stdin.read(MAX_SPEC_FILE_BYTES + 1)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_SPEC_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read spec file {path}: {exc}", EXIT_USAGE) from None
    if len(text) > MAX_SPEC_FILE_BYTES:
        raise CliError(f"{path}: larger than {MAX_SPEC_FILE_BYTES} bytes", EXIT_USAGE)
    try:
        if Path(path).suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: not valid {_format_name(path)}: {exc}", EXIT_USAGE) from None


def _format_name(path: str) -> str:
    return "JSON" if Path(path).suffix.lower() == ".json" else "YAML"


def load_spec(path: str) -> AppSpec:
    """The app spec in ``path``, checked like the API checks it (field-named errors)."""
    from edgechain.api.schema import SchemaError, parse_app_spec

    document = read_spec_document(path)
    try:
        return parse_app_spec(document)
    except SchemaError as exc:
        raise CliError(f"{path}: {exc}", EXIT_USAGE) from None
