"""Small JSON files a node leaves in its data directory for other processes to read:
the ready file, the API file, ``left.json``. Written whole or not at all: a reader
polling for the file never sees half of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_file(path: Path, value: Any) -> None:
    """Write ``value`` to a temporary file beside ``path`` and rename it into place;
    on an OSError (a full disk) the temporary file is removed and the error raised."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
