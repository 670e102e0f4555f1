"""ssSource and mpc_orbits columns of known asteroids."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np

from afs.alerts.simulation.sky import ecliptic, galactic


def ss_source_table(o: dict, oi: np.ndarray, src: dict) -> dict:
    """ssSource columns for known asteroids, from their state and the measured position."""
    ra, dec = src["ra"], src["dec"]
    lam, beta = ecliptic(ra, dec)
    gl, gb = galactic(ra, dec)
    rate_ra, rate_dec = o["rate_ra"][oi], o["rate_dec"][oi]
    rate = np.hypot(rate_ra, rate_dec)
    # The observed-minus-predicted offset: mostly along track (timing), some across.
    along = o["eph_err"][oi] * np.sin(o["phase"][oi] * 7.3)
    cross = 0.3 * o["eph_err"][oi] * np.cos(o["phase"][oi] * 5.1)
    ua, ud = rate_ra / np.maximum(rate, 1e-9), rate_dec / np.maximum(rate, 1e-9)
    off_ra, off_dec = along * ua - cross * ud, along * ud + cross * ua
    table = {
        "diaSourceId": src["diaSourceId"], "ssObjectId": o["ss_id"][oi], "designation": o["designation"][oi],
        "eclLambda": lam, "eclBeta": beta, "galLon": gl, "galLat": gb,
        "elongation": o["elongation"][oi], "phaseAngle": o["phase_angle"][oi],
        "topoRange": o["delta"][oi], "topoRangeRate": o["topo_rate"][oi],
        "helioRange": o["r"][oi], "helioRangeRate": o["helio_rate"][oi],
        "ephRa": ra - off_ra / 3600 / np.cos(np.radians(dec)), "ephDec": dec - off_dec / 3600,
        "ephVmag": o["vmag"][oi], "ephRate": rate, "ephRateRa": rate_ra, "ephRateDec": rate_dec,
        "ephOffset": np.hypot(along, cross), "ephOffsetRa": off_ra, "ephOffsetDec": off_dec,
        "ephOffsetAlongTrack": along, "ephOffsetCrossTrack": cross, "diaDistanceRank": np.ones(len(oi), int),
    }
    for name in ("helio", "topo"):
        for axis in "xyz":
            table[f"{name}_{axis}"] = o[f"{name}_{axis}"][oi]
        v = np.stack([o[f"{name}_v{axis}"][oi] for axis in "xyz"])
        table.update({f"{name}_v{axis}": comp for axis, comp in zip("xyz", v)})
        table[f"{name}_vtot"] = np.linalg.norm(v, axis=0)
    return table


def mpc_orbits_table(o: dict, oi: np.ndarray, mjd: float) -> dict:
    """mpc_orbits rows: the orbit the MPC would hold for each known asteroid."""
    n = len(oi)
    a, e = o["a"][oi], o["e"][oi]
    u = o["u_param"][oi].astype(float)
    rel = 10.0 ** (u / 2 - 7.5)                  # fractional element uncertainty grows with the U parameter
    period = 360.0 / o["mean_motion"][oi]
    arc = np.minimum(o["nopp"][oi] * 365.25 * 0.8, 12000.0) + 30
    created = [datetime(2015, 1, 1, tzinfo=timezone.utc) + timedelta(days=3650 * f)
               for f in o["orbit_created"][oi].tolist()]
    fitted = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=mjd - 61041.0 - 10)
    nan = np.full(n, np.nan)
    table = {
        "id": o["mpc_id"][oi], "designation": o["designation"][oi],
        "packed_primary_provisional_designation": o["packed"][oi],
        "unpacked_primary_provisional_designation": o["designation"][oi],
        "mpc_orb_jsonb": [_orbit_json(*row, mjd) for row in zip(
            o["designation"][oi].tolist(), o["q"][oi].tolist(), e.tolist(), o["i"][oi].tolist(),
            o["node"][oi].tolist(), o["argperi"][oi].tolist())],
        "created_at": created, "updated_at": [fitted] * n, "fitting_datetime": [fitted] * n,
        "orbit_type_int": np.full(n, -1), "u_param": o["u_param"][oi], "nopp": o["nopp"][oi],
        "arc_length_total": arc, "arc_length_sel": arc * 0.98, "nobs_total": o["nobs"][oi],
        "nobs_total_sel": (o["nobs"][oi] * 0.97).astype(int),
        "a": a, "q": o["q"][oi], "e": e, "i": o["i"][oi], "node": o["node"][oi], "argperi": o["argperi"][oi],
        "peri_time": o["mean_anomaly"][oi] / o["mean_motion"][oi], "mean_anomaly": o["mean_anomaly"][oi],
        "period": period, "mean_motion": o["mean_motion"][oi],
        "a_unc": a * rel, "q_unc": o["q"][oi] * rel, "e_unc": np.maximum(e, 0.01) * rel,
        "i_unc": o["i"][oi] * rel + 1e-6,
        "node_unc": 360 * rel, "argperi_unc": 360 * rel, "peri_time_unc": period * rel,
        "mean_anomaly_unc": 360 * rel, "period_unc": period * 1.5 * rel,
        "mean_motion_unc": o["mean_motion"][oi] * 1.5 * rel,
        "epoch_mjd": np.full(n, float(np.floor(mjd))), "h": o["H"][oi], "g": np.full(n, 0.15),
        "not_normalized_rms": 0.2 + 0.1 * u, "normalized_rms": 0.5 + 0.05 * u,
        "earth_moid": np.abs(o["q"][oi] - 1.0) * np.cos(np.radians(o["i"][oi])) + 0.001,
    }
    for name in ("yarkovsky", "srp", "a1", "a2", "a3", "dt"):      # non-gravitational terms: comets only
        table[name] = nan
        table[f"{name}_unc"] = nan
    return table


def _orbit_json(designation: str, q: float, e: float, i: float, node: float, argperi: float, mjd: float) -> str:
    """A reduced MPC orbit JSON (mpc_orb format): designation, cometary elements, epoch."""
    return json.dumps({"designation_data": {"unpacked_primary_provisional_designation": designation},
                       "COM": {"q": round(q, 8), "e": round(e, 8), "i": round(i, 6), "node": round(node, 6),
                               "argperi": round(argperi, 6)},
                       "epoch_data": {"epoch": round(mjd, 1), "timeform": "MJD", "timesystem": "TT"}},
                      separators=(",", ":"))
