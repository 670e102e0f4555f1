"""The public entry points, simulate_visit and simulate_visits: argument checks, seeding, scheduler blobs."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from afs.alerts.simulation.clock import DEFAULT_FIRST_VISIT
from afs.alerts.simulation.ids import ID_BITS
from afs.alerts.simulation.observe import observe
from afs.alerts.simulation.schedule import new_field, revisit_epoch
from afs.gcpause import gc_paused

BLOB = 5                      # fields per scheduler blob in simulate_visits; each is visited twice


def simulate_visit(visit: int, n_alerts: int, seed: int, *, cutouts: bool = True,
                   mjd: float | None = None) -> list[dict]:
    """One visit's alerts as plain dicts valid under the lsst.v11_1.alert Avro schema (fastavro-serialisable).

    The same (visit, n_alerts, seed, mjd) always gives the same alerts; this is also the first visit that
    simulate_visits makes of the field of this visit number. mjd defaults to the time the visit number implies.
    """
    _check(visit, n_alerts, seed)
    rng = np.random.default_rng([seed, visit])
    with gc_paused():
        return observe(rng, new_field(rng, visit, mjd), n_alerts, cutouts) if n_alerts else []


def simulate_visits(n_visits: int, alerts_per_visit: int, seed: int, *, cutouts: bool = True,
                    first_visit: int = DEFAULT_FIRST_VISIT) -> Iterator[tuple[int, list[dict]]]:
    """Consecutive visits (visit id, alerts), deterministic for the seed.

    Visits come in blobs of BLOB new fields followed by one revisit of each in another band, as the
    scheduler takes pairs: real objects and known asteroids detected again carry the first visit's source
    in their history, asteroids having moved on.
    """
    _check(first_visit + max(n_visits - 1, 0), alerts_per_visit, seed)
    end = first_visit + n_visits
    for start in range(first_visit, end, 2 * BLOB):
        fields = []
        for visit in range(start, min(start + BLOB, end)):
            rng = np.random.default_rng([seed, visit])
            field = new_field(rng, visit, None)
            fields.append(field)
            with gc_paused():
                alerts = observe(rng, field, alerts_per_visit, cutouts) if alerts_per_visit else []
            yield visit, alerts
        for field, visit in zip(fields, range(start + BLOB, min(start + 2 * BLOB, end))):
            rng = np.random.default_rng([seed, visit])
            field.epochs = field.epochs.extend(revisit_epoch(rng, field, visit))
            with gc_paused():
                alerts = observe(rng, field, alerts_per_visit, cutouts) if alerts_per_visit else []
            yield visit, alerts


def _check(visit: int, n_alerts: int, seed: int) -> None:
    if not 0 <= visit < 2 ** (63 - ID_BITS):
        raise ValueError(f"visit must be in [0, 2**{63 - ID_BITS}) to keep diaSourceIds in 64 bits, got {visit}")
    if not 0 <= n_alerts < 2 ** (ID_BITS - 2):
        raise ValueError(f"n_alerts must be in [0, {2 ** (ID_BITS - 2)}), got {n_alerts}")
    if seed < 0:
        raise ValueError("seed must be >= 0")


