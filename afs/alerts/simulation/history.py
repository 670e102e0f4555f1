"""The past of freshly drawn objects: diaObject ids, prvDiaSources (detections) and prvDiaForcedSources
(every covered visit since the object was created)."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.dia_sources import dia_source_table, forced_source_table
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.ids import source_ids
from afs.alerts.simulation.kinds import HISTORY_KINDS, SSO
from afs.alerts.simulation.light_curves import difference_flux
from afs.alerts.simulation.measurement import coverage, measure
from afs.alerts.simulation.schedule import old_visit_ids
from afs.alerts.simulation.tables import take_rows


def draw_history(rng, o: dict, epochs: Epochs, now: int):
    """Object ids, prvDiaSources and prvDiaForcedSources of freshly drawn history kinds."""
    n = len(o["kind"])
    current_id = source_ids(np.full(n, epochs.visit[now]), o["slot"])
    o["object_id"] = np.where(o["kind"] == SSO, -1, current_id)
    idx = np.flatnonzero(np.isin(o["kind"], HISTORY_KINDS))
    past = epochs.take(np.arange(now))
    if not len(idx) or not len(past):
        return {}, {}
    sub = take_rows(o, idx)
    det, _, _ = coverage(sub, np.arange(len(idx)), past)
    covered = det >= 0
    m = measure(rng, sub, difference_flux(rng, sub, past.mjd, past.band), past)
    for j, e in enumerate(np.flatnonzero(past.simulated)):     # what draw_detected measured there, when it checked
        for key, grid in m.items():
            grid[:, e] = sub[f"sim_{key}"][:, j]
    detected = covered & (m["snr"] >= 5)
    any_det = detected.any(axis=1)
    first = np.where(any_det, np.argmax(detected, axis=1), now)
    old = sub["old"] & any_det
    created = np.where(old, -1, first)
    first_visit = np.where(first < now, past.visit[np.minimum(first, len(past) - 1)], epochs.visit[now])
    before_window = old_visit_ids(rng, epochs.mjd[now], int(epochs.visit[now] % 100_000), len(idx))
    first_visit = np.where(old, before_window, first_visit)
    o["object_id"][idx] = source_ids(first_visit, sub["slot"])
    r, c = np.nonzero(detected)
    prv = dia_source_table(rng, o, idx[r], past, c, {k: v[r, c] for k, v in m.items()},
                           o["ra"][idx[r]], o["dec"][idx[r]])
    r, c = np.nonzero(covered & (np.arange(len(past))[None, :] >= created[:, None]) & (first < now)[:, None])
    forced = forced_source_table(rng, o, idx[r], past, c, {k: v[r, c] for k, v in m.items()})
    return prv, forced
