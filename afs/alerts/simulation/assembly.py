"""Alert dicts from a visit's column tables: diaSource, prvDiaSources, prvDiaForcedSources, diaObject,
ssSource, mpc_orbits and cutouts, in detector order."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.asteroid_rows import mpc_orbits_table, ss_source_table
from afs.alerts.simulation.cutout_scenes import render_cutouts
from afs.alerts.simulation.dia_objects import dia_object_table, empty_forced_table
from afs.alerts.simulation.dia_sources import SOURCE_CONSTANTS
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import SSO
from afs.alerts.simulation.photometry import BANDS
from afs.alerts.simulation.records import DIA_FORCED_SOURCE, DIA_OBJECT, DIA_SOURCE, MPC_ORBITS, SS_SOURCE, to_records
from afs.alerts.simulation.schedule import Field
from afs.alerts.simulation.sky import galactic
from afs.alerts.simulation.tables import concat_rows, take_rows


def assemble(rng, o: dict, epoch: Epochs, cur: dict, prv: dict, forced: dict, field: Field,
             with_cutouts: bool) -> list[dict]:
    n = len(o["kind"])
    needed = ("_oi", "_band", "psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "midpointMjdTai", "ra", "dec",
              "raErr")
    detections = concat_rows([{k: t[k] for k in needed} for t in (prv, cur) if t])
    obj = dia_object_table(n, o["object_id"], detections, forced or empty_forced_table(), cur)
    dia_sources = to_records({**cur, **SOURCE_CONSTANTS}, DIA_SOURCE, n)
    prv_lists = _split(to_records({**prv, **SOURCE_CONSTANTS}, DIA_SOURCE, len(prv["_oi"])), prv["_oi"], n) \
        if prv else [None] * n
    forced_lists = _split(to_records({**forced, "timeWithdrawnMjdTai": None}, DIA_FORCED_SOURCE, len(forced["_oi"])),
                          forced["_oi"], n) if forced else [None] * n
    objects = to_records(obj, DIA_OBJECT, n)
    known = np.flatnonzero(o["kind"] == SSO)
    ss_sources, orbits = [None] * n, [None] * n
    if len(known):
        src = take_rows(cur, known)
        for i, ss, mpc in zip(known.tolist(), to_records(ss_source_table(o, known, src), SS_SOURCE, len(known)),
                              to_records(mpc_orbits_table(o, known, float(epoch.mjd[0])), MPC_ORBITS, len(known))):
            ss_sources[i], orbits[i] = ss, mpc
    if with_cutouts:
        diff, sci, tmpl = render_cutouts(rng, o, cur, epoch)
    else:
        diff = sci = tmpl = [None] * n
    _, gb = galactic(field.ra0, field.dec0)
    reason = f"pairs_{BANDS[field.band]}{BANDS[field.pair_band]}_33.0"          # scheduler names, as in RTN-097
    target = "lowdust" if abs(gb) > 15 else "galactic_plane"
    alerts = []
    for i in np.lexsort((o["slot"], cur["detector"])).tolist():
        is_sso = o["kind"][i] == SSO
        alerts.append({
            "diaSourceId": dia_sources[i]["diaSourceId"], "observation_reason": reason, "target_name": target,
            "diaSource": dia_sources[i], "prvDiaSources": prv_lists[i], "prvDiaForcedSources": forced_lists[i],
            "diaObject": None if is_sso else objects[i], "ssSource": ss_sources[i], "mpc_orbits": orbits[i],
            "cutoutDifference": diff[i], "cutoutScience": sci[i], "cutoutTemplate": tmpl[i],
        })
    return alerts


def _split(records: list[dict], owner: np.ndarray, n: int) -> list[list[dict] | None]:
    """Rows grouped by owning alert (rows already sorted by owner, then time); None for no rows."""
    bounds = np.searchsorted(owner, np.arange(n + 1)).tolist()
    return [records[a:b] or None for a, b in zip(bounds[:-1], bounds[1:])]
