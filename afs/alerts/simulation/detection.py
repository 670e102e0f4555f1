"""New objects at a visit: how many of each kind, and drawing them until enough are detected (>= 5 sigma)."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import HISTORY_KINDS
from afs.alerts.simulation.light_curves import difference_flux, template_flux
from afs.alerts.simulation.measurement import coverage, measure
from afs.alerts.simulation.populations import sample
from afs.alerts.simulation.tables import concat_rows, take_rows


def fresh_counts(rng, n: int, mix: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """How many new objects of each kind join the carried ones so that the visit follows the field's mix:
    kinds short of their share get it; what is left goes to the real kinds that can newly cross threshold."""
    need = np.maximum(n * mix - np.bincount(carried, minlength=len(mix)), 0)
    free = n - len(carried)
    if need.sum() < free:
        real = np.isin(np.arange(len(mix)), HISTORY_KINDS)
        need = need + real * mix * (free - need.sum()) / mix[real].sum()
    return rng.multinomial(free, need / need.sum()) if free else np.zeros(len(mix), int)


def draw_detected(rng, kind: int, count: int, epochs: Epochs, now: int, forbid: np.ndarray) -> dict:
    """Up to count objects of one kind detected (>= 5 sigma) at epoch now. A history kind must also have gone
    undetected (off the detectors or < 5 sigma) at the forbid epochs, simulated visits where it raised no
    alert; those measurements are kept (sim_*) for its history."""
    epoch = epochs.take(now)
    parts, have = [], 0
    for _ in range(40):
        if have >= count:
            break
        o = _finish(rng, sample(rng, kind, max(16, 3 * (count - have)), epoch))
        m = measure(rng, o, difference_flux(rng, o, epoch.mjd, epoch.band), epoch)
        ok = m["snr"][:, 0] >= 5
        seen = {}
        if kind in HISTORY_KINDS and len(forbid):
            past = epochs.take(forbid)
            det, _, _ = coverage(o, np.arange(len(ok)), past)
            seen = measure(rng, o, difference_flux(rng, o, past.mjd, past.band), past)
            ok &= ((det < 0) | (seen["snr"] < 5)).all(axis=1)
        keep = np.flatnonzero(ok)[: count - have]
        part = take_rows(o, keep)
        part.update({f"now_{k}": v[keep, 0] for k, v in m.items()})
        part.update({f"sim_{k}": v[keep] for k, v in seen.items()})
        parts.append(part)
        have += len(keep)
    return concat_rows(parts)


def _finish(rng, o: dict) -> dict:
    n = len(o["kind"])
    o["tmpl"] = template_flux(o)
    o["tmpl_noise"] = rng.standard_normal((n, 6))
    return o
