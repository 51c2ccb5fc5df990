"""edgechain: decentralised application orchestration for edge devices.

A VDF-seeded permissioned blockchain whose blocks record resource use and a
deterministic migration plan (Tošić et al., Sensors 2023, 23, 4448).
"""

__version__ = "0.1.0"
