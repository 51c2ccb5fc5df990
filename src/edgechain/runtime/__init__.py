"""Application runtimes and the migration transfer (DESIGN.md, "Runtimes").

* ``base``: the ``AppRuntime`` interface and its records.
* ``process``: plain processes, the embedded default.
* ``container``: containers through the Docker Engine API (Docker or Podman).
* ``podman``, ``image``: a private Podman API service and the sample image.
* ``protocol``, ``transfer``: save / transmit / resume between nodes over TCP.
* ``samples``: the sample apps of ``apps/`` as app specs.
* ``manager``: a node's ``AppManager``: runs the apps the chain places on it, carries
  out its migration orders, measures per-app usage for its reports.

All but ``manager`` import only ``edgechain.types``, ``errors``, ``chain`` and
``crypto``; ``manager`` also reads consensus state (allowed: ``runtime/`` sits above
``consensus/``). The docker SDK is imported lazily by the container runtime, so the
process runtime works on a host without it.
"""

from edgechain.runtime.base import (
    AppInfo,
    AppNotFoundError,
    AppRuntime,
    AppRuntimeError,
    AppStats,
    AppStatus,
    SavedState,
)
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.transfer import (
    MigrationOutcome,
    MigrationResult,
    PlanCheck,
    ServerStats,
    TransferClient,
    TransferServer,
    TransferTimeouts,
)

__all__ = [
    "AppInfo",
    "AppNotFoundError",
    "AppRuntime",
    "AppRuntimeError",
    "AppStats",
    "AppStatus",
    "MigrationOutcome",
    "MigrationResult",
    "PlanCheck",
    "ProcessRuntime",
    "SavedState",
    "ServerStats",
    "TransferClient",
    "TransferServer",
    "TransferTimeouts",
]
