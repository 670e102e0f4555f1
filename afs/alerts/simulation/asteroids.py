"""Asteroids seen in given directions: a self-consistent heliocentric orbit and state, geometry, ephemeris rates,
brightness, MPC designation and Keplerian elements."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.photometry import power_law_mags
from afs.alerts.simulation.sky import ECLIPTIC_POLE, TO_ECLIPTIC, sun_direction, unit_vector

_GM_SUN = 2.9591220828559115e-4   # AU^3 / day^2
_AU_PER_DAY_KMS = 1731.456837


def draw_asteroids(rng, ra, dec, mjd):
    """Orbit, geometry, ephemeris and photometry of asteroids seen in directions (ra, dec) at mjd."""
    n = len(ra)
    cls = rng.choice(4, n, p=[0.9, 0.03, 0.05, 0.02])                 # main belt, NEO, Hilda/Trojan, TNO
    a = np.select([cls == 0, cls == 1, cls == 2], [rng.uniform(2.1, 3.3, n), rng.uniform(1.0, 2.8, n),
                  rng.uniform(3.9, 5.3, n)], rng.uniform(35, 50, n))
    e = np.where(cls == 1, rng.uniform(np.clip(1 - 1.3 / a, 0.05, 0.79), 0.8), rng.uniform(0, 0.25, n))   # NEO: q < 1.3
    inc = np.radians(np.abs(rng.normal(0, np.select([cls == 1], [15.0], 9.0), n)))
    h_lo = np.select([cls == 1, cls == 2, cls == 3], [15.0, 9.0, 3.0], 12.0)
    h_hi = np.select([cls == 1, cls == 2, cls == 3], [25.0, 17.0, 9.0], 22.5)
    big_h = power_law_mags(rng, n, h_lo, h_hi, slope=0.3)
    ecc_anom = _kepler(rng.uniform(0, 2 * np.pi, n), e)
    r = a * (1 - e * np.cos(ecc_anom))
    nu = 2 * np.arctan2(np.sqrt(1 + e) * np.sin(ecc_anom / 2), np.sqrt(1 - e) * np.cos(ecc_anom / 2))

    sun, sun_dist = sun_direction(mjd)
    earth = -sun * sun_dist
    los = unit_vector(ra, dec)
    proj = los @ earth
    disc = proj**2 - sun_dist**2 + r**2
    seen = (disc > 0) & (np.sqrt(np.maximum(disc, 0)) > proj)     # the line of sight reaches distance r
    delta = np.where(seen, -proj + np.sqrt(np.maximum(disc, 0)), 1.0)
    pos = earth[None, :] + delta[:, None] * los
    r = np.linalg.norm(pos, axis=1)
    a = np.maximum(a, r / (1 + e) + 1e-6)            # keep the orbit able to reach r (only for r < q edge cases)
    rhat = pos / r[:, None]
    speed = np.sqrt(_GM_SUN * (2 / r - 1 / a))
    gamma = np.arctan2(e * np.sin(nu), 1 + e * np.cos(nu))            # flight-path angle
    t0 = np.cross(ECLIPTIC_POLE, rhat)
    t0 /= np.linalg.norm(t0, axis=1)[:, None]
    psi = inc * np.where(rng.uniform(size=n) < 0.5, -1, 1)
    tangent = t0 * np.cos(psi)[:, None] + np.cross(rhat, t0) * np.sin(psi)[:, None]
    vel = speed[:, None] * (np.sin(gamma)[:, None] * rhat + np.cos(gamma)[:, None] * tangent)
    earth_vel = np.cross(ECLIPTIC_POLE, earth / sun_dist) * 2 * np.pi / 365.25 * sun_dist
    topo, topo_vel = pos - earth, vel - earth_vel

    cos_phase = np.sum(pos * topo, axis=1) / (r * delta)
    phase = np.arccos(np.clip(cos_phase, -1, 1))
    tan_half = np.tan(phase / 2)
    phi = 0.85 * np.exp(-3.33 * tan_half**0.63) + 0.15 * np.exp(-1.87 * tan_half**1.22)
    vmag = np.where(seen, big_h + 5 * np.log10(r * delta) - 2.5 * np.log10(np.maximum(phi, 1e-6)), 99.0)
    v_perp = topo_vel - np.sum(topo_vel * los, axis=1)[:, None] * los
    rar, decr = np.radians(ra), np.radians(dec)
    east = np.stack([-np.sin(rar), np.cos(rar), np.zeros(n)], axis=1)
    north = np.stack([-np.sin(decr) * np.cos(rar), -np.sin(decr) * np.sin(rar), np.cos(decr)], axis=1)
    rate_ra = np.degrees(np.sum(v_perp * east, axis=1) / delta)
    rate_dec = np.degrees(np.sum(v_perp * north, axis=1) / delta)
    unpacked, packed = _designations(rng, n)
    out = {
        "H": big_h, "vmag": vmag, "r": r, "delta": delta, "phase_angle": np.degrees(phase),
        "elongation": np.degrees(np.arccos(np.clip(los @ sun, -1, 1))),
        "helio_rate": np.sum(pos * vel, axis=1) / r * _AU_PER_DAY_KMS,
        "topo_rate": np.sum(topo * topo_vel, axis=1) / delta * _AU_PER_DAY_KMS,
        "rate_ra": rate_ra, "rate_dec": rate_dec, "ss_t": np.full(n, mjd),
        "rot_amp": rng.uniform(0.0, 0.3, n), "rot_period": rng.uniform(0.1, 1.0, n), "phase": rng.uniform(0, 1, n),
        "eph_err": np.exp(rng.uniform(np.log(0.05), np.log(1.5), n)) * np.where(cls == 1, 3.0, 1.0),
        "designation": unpacked, "packed": packed,
        "ss_id": np.array([int.from_bytes(p.encode().ljust(8), "big") for p in packed.tolist()], dtype=np.int64),
        "mpc_id": rng.integers(1, 2**31 - 1, n), "u_param": rng.integers(0, 7, n),
        "nopp": rng.integers(1, 15, n), "nobs": rng.integers(15, 3000, n),
        "orbit_created": rng.uniform(0, 1, n),
    }
    for name, vec in (("helio", pos), ("helio_v", vel * _AU_PER_DAY_KMS), ("topo", topo),
                      ("topo_v", topo_vel * _AU_PER_DAY_KMS)):
        for axis, comp in zip("xyz", vec.T):
            out[f"{name}_{axis}" if not name.endswith("_v") else f"{name}{axis}"] = comp
    out.update(_elements(pos @ TO_ECLIPTIC.T, vel @ TO_ECLIPTIC.T))
    return out


def _kepler(mean_anomaly, e):
    ecc = mean_anomaly + e * np.sin(mean_anomaly)
    for _ in range(12):
        ecc = ecc - (ecc - e * np.sin(ecc) - mean_anomaly) / (1 - e * np.cos(ecc))
    return ecc


_LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"     # MPC half-month and order letters (no I)
_CYCLE = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _designations(rng, n):
    """(unpacked, packed) MPC provisional designations, e.g. ('2011 QF99', 'K11Q99F')."""
    year = np.clip(2026 - rng.exponential(8.0, n).astype(int), 1990, 2025)
    half = rng.integers(0, 24, n)
    order = rng.integers(0, 25, n)
    cycle = np.minimum(rng.exponential(60.0, n).astype(int), 619)
    unpacked, packed = [], []
    for y, h, o, c in zip(year.tolist(), half.tolist(), order.tolist(), cycle.tolist()):
        unpacked.append(f"{y} {_LETTERS[h]}{_LETTERS[o]}{c if c else ''}")
        packed.append(f"{'IJK'[y // 100 - 18]}{y % 100:02d}{_LETTERS[h]}{_CYCLE[c // 10]}{c % 10}{_LETTERS[o]}")
    return np.array(unpacked), np.array(packed)


def _elements(pos, vel):
    """Heliocentric ecliptic Keplerian elements from state vectors [AU, AU/day]."""
    r = np.linalg.norm(pos, axis=1)
    v2 = np.sum(vel**2, axis=1)
    h = np.cross(pos, vel)
    hn = np.linalg.norm(h, axis=1)
    node_vec = np.stack([-h[:, 1], h[:, 0], np.zeros(len(r))], axis=1)
    nn = np.maximum(np.linalg.norm(node_vec, axis=1), 1e-12)
    e_vec = ((v2 - _GM_SUN / r)[:, None] * pos - np.sum(pos * vel, axis=1)[:, None] * vel) / _GM_SUN
    e = np.linalg.norm(e_vec, axis=1)
    a = 1 / (2 / r - v2 / _GM_SUN)
    inc = np.degrees(np.arccos(np.clip(h[:, 2] / hn, -1, 1)))
    node = np.degrees(np.arctan2(node_vec[:, 1], node_vec[:, 0])) % 360
    argperi = np.degrees(np.arccos(np.clip(np.sum(node_vec * e_vec, axis=1) / (nn * e), -1, 1)))
    argperi = np.where(e_vec[:, 2] < 0, 360 - argperi, argperi)
    nu = np.arccos(np.clip(np.sum(e_vec * pos, axis=1) / (e * r), -1, 1))
    nu = np.where(np.sum(pos * vel, axis=1) < 0, 2 * np.pi - nu, nu)
    ecc_anom = 2 * np.arctan2(np.sqrt(1 - e) * np.sin(nu / 2), np.sqrt(1 + e) * np.cos(nu / 2))
    mean_anomaly = np.degrees(ecc_anom - e * np.sin(ecc_anom)) % 360
    mean_motion = np.degrees(np.sqrt(_GM_SUN / a**3))
    return {"a": a, "e": e, "q": a * (1 - e), "i": inc, "node": node, "argperi": argperi,
            "mean_anomaly": mean_anomaly, "mean_motion": mean_motion}
