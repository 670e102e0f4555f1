"""Realistic simulated Rubin alerts (schema lsst.v11_1.alert), one visit at a time: the public API.

    from afs.alerts.simulate import simulate_visit, simulate_visits

The model lives in ``afs.alerts.simulation`` (one module per concern; its docstring describes the model).
"""

from __future__ import annotations

from afs.alerts.simulation.clock import DEFAULT_FIRST_VISIT
from afs.alerts.simulation.kinds import KIND_NAMES
from afs.alerts.simulation.visits import BLOB, simulate_visit, simulate_visits

__all__ = ["simulate_visit", "simulate_visits", "KIND_NAMES", "BLOB", "DEFAULT_FIRST_VISIT"]
