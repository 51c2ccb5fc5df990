"""Application runtimes and the migration transfer (DESIGN.md, "Runtimes").

* ``base``: the ``AppRuntime`` interface and its records.
* ``process``: plain processes, the embedded default.
* ``container``, ``container_engine``, ``container_limits``, ``state_quota``: containers
  through the Docker Engine API (Docker or Podman), their limits and state size.
* ``runtimes``: a node's runtimes together (process always, containers with an engine).
* ``podman``, ``image``: a private Podman API service and the sample image.
* ``protocol``, ``transfer``: save / transmit / resume between nodes over TCP.
* ``samples``: the sample apps of ``apps/`` as app specs.
* ``manager``: a node's ``AppManager``: runs the apps the chain places on it, carries
  out its migration orders, measures per-app usage for its reports; its parts
  (``head_queries``, ``lease_renewal``, ``app_starter``, ``migrations_out``,
  ``reconcile``, ``replica_sync``, ``usage_sampler``, ``lifecycle``, ``replication``)
  also read consensus and orchestrator state (allowed: ``runtime/`` sits above them).

The runtimes and the transfer import only ``edgechain.types``, ``errors``, ``chain`` and
``crypto``. The docker SDK is imported only by a node configured with a container
engine (``runtimes.open_node_runtimes``), so the process runtime works without it.
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
