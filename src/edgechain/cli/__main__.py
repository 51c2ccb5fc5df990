"""``python -m edgechain.cli ...`` (the testnet launcher starts its nodes this way)."""

import sys

from edgechain.cli import main

sys.exit(main())
