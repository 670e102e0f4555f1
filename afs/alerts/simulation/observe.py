"""One visit of a field: carried and fresh objects, their diaSources and history, assembled into alerts."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.assembly import assemble
from afs.alerts.simulation.detection import draw_detected, fresh_counts
from afs.alerts.simulation.dia_sources import dia_source_table, forced_source_table
from afs.alerts.simulation.history import draw_history
from afs.alerts.simulation.kinds import BOGUS, SSO
from afs.alerts.simulation.populations import kind_mix
from afs.alerts.simulation.revisit import carry_over, keep_for_revisit
from afs.alerts.simulation.schedule import Field
from afs.alerts.simulation.tables import concat_rows, take_rows


def observe(rng, field: Field, n: int, with_cutouts: bool) -> list[dict]:
    """The alerts of the field's latest visit: carried objects first, the rest drawn from the field's mix."""
    epochs = field.epochs
    now = len(epochs) - 1
    forbid = np.flatnonzero(epochs.simulated[:now])
    carried, carried_prv, carried_forced = carry_over(rng, field, epochs, now) if field.kept else ({}, {}, {})
    n_carried = len(carried.get("kind", ()))
    if n_carried > n:
        carried = take_rows(carried, np.arange(n))
        carried_prv, carried_forced = ({k: v[t["_oi"] < n] for k, v in t.items()}
                                       for t in (carried_prv, carried_forced))
        n_carried = n
    counts = fresh_counts(rng, n, kind_mix(field.ra0, field.dec0), carried.get("kind", np.zeros(0, int)))
    parts = [draw_detected(rng, kind, int(count), epochs, now, forbid) for kind, count in enumerate(counts) if count]
    short = n - n_carried - sum(len(p["kind"]) for p in parts)
    if short:
        parts.append(draw_detected(rng, BOGUS, short, epochs, now, forbid))
    fresh = concat_rows(parts)
    if fresh:
        fresh = take_rows(fresh, rng.permutation(len(fresh["kind"])))
        fresh["slot"] = field.next_slot + np.arange(len(fresh["kind"]))
        field.next_slot += len(fresh["kind"])
        prv, forced = draw_history(rng, fresh, epochs, now)
        for table in (prv, forced):
            if table:
                table["_oi"] = table["_oi"] + n_carried
    else:
        prv, forced = {}, {}
    o = concat_rows([carried, fresh])
    if not o:
        return []
    m = {k[4:]: v for k, v in o.items() if k.startswith("now_")}
    current = dia_source_table(rng, o, np.arange(n), epochs, np.full(n, now), m, o["ra"], o["dec"])
    prv, forced = concat_rows([carried_prv, prv]), concat_rows([carried_forced, forced])
    if field.kept is None:
        # Forced photometry of this visit joins the history the revisit will see (asteroids have no diaObject).
        objects = np.flatnonzero(o["kind"] != SSO)
        forced_now = forced_source_table(rng, o, objects, epochs, np.full(len(objects), now),
                                         {k: v[objects] for k, v in m.items()})
        keep_for_revisit(field, o, prv, forced, current, forced_now)
    else:
        field.kept = None
    return assemble(rng, o, epochs.take(now), current, prv, forced, field, with_cutouts)
