"""What a field's revisit inherits from its first visit: real objects and known asteroids, with their sources."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import HISTORY_KINDS, SSO
from afs.alerts.simulation.light_curves import difference_flux
from afs.alerts.simulation.measurement import coverage, measure
from afs.alerts.simulation.schedule import Field
from afs.alerts.simulation.tables import concat_rows, sort_by_owner, take_rows


def carry_over(rng, field: Field, epochs: Epochs, now: int):
    """Objects seen at the field's first visit that are detected again now, with their stored history."""
    kept = field.kept
    o = dict(kept["obj"])
    epoch = epochs.take(now)
    sso = np.flatnonzero(o["kind"] == SSO)
    if len(sso):                                   # asteroids have moved on along their ephemeris
        dt = epoch.mjd[0] - o["ss_t"][sso]
        o["ra"], o["dec"] = o["ra"].copy(), o["dec"].copy()
        o["ra"][sso] = (o["ra"][sso] + o["rate_ra"][sso] * dt / np.cos(np.radians(o["dec"][sso]))) % 360
        o["dec"][sso] = o["dec"][sso] + o["rate_dec"][sso] * dt
    det, _, _ = coverage(o, np.arange(len(o["kind"])), epoch)
    m = measure(rng, o, difference_flux(rng, o, epoch.mjd, epoch.band), epoch)
    keep = np.flatnonzero((det[:, 0] >= 0) & (m["snr"][:, 0] >= 5))
    carried = take_rows(o, keep)
    carried.update({f"now_{k}": v[keep, 0] for k, v in m.items()})
    remap = np.full(len(o["kind"]), -1)
    remap[keep] = np.arange(len(keep))
    tables = []
    for name in ("prv", "forced"):
        table = take_rows(kept[name], np.flatnonzero(remap[kept[name]["_oi"]] >= 0))
        table["_oi"] = remap[table["_oi"]]
        tables.append(sort_by_owner(table))
    return carried, tables[0], tables[1]


def keep_for_revisit(field: Field, o: dict, prv: dict, forced: dict, current: dict, forced_now: dict) -> None:
    """What the revisit needs: real objects and known asteroids with every source they have so far."""
    keep = np.flatnonzero(np.isin(o["kind"], HISTORY_KINDS + (SSO,)))
    remap = np.full(len(o["kind"]), -1)
    remap[keep] = np.arange(len(keep))
    kept = {"obj": {k: v[keep] for k, v in o.items() if not k.startswith(("now_", "sim_"))}}
    for name, parts in (("prv", (prv, current)), ("forced", (forced, forced_now))):
        table = concat_rows([take_rows(t, np.flatnonzero(remap[t["_oi"]] >= 0)) for t in parts if t])
        if table:
            table["_oi"] = remap[table["_oi"]]
        kept[name] = table
    field.kept = kept
