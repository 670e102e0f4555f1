"""Source populations: each kind's sampler (position on the detectors, brightness, light-curve parameters,
host) and the mix of kinds a field shows, by its galactic and ecliptic latitude."""

from __future__ import annotations

from typing import Callable

import numpy as np

from afs.alerts.simulation.asteroids import draw_asteroids
from afs.alerts.simulation.camera import DETECTOR_NX, DETECTOR_NY, N_DETECTORS, detector_to_focal, focal_to_sky
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import (
    AGN, BOGUS, BOGUS_COSMIC_RAY, BOGUS_DIPOLE, BOGUS_EDGE, BOGUS_NOISE, BOGUS_RESIDUAL, BOGUS_STREAK, ECLIPSE, FAST,
    MOVER, SAWTOOTH, SINE, SN, SSO, ULENS, VAR,
)
from afs.alerts.simulation.photometry import ZP_NJY, mag_to_flux, power_law_mags
from afs.alerts.simulation.sky import ecliptic, galactic


def kind_mix(ra0: float, dec0: float) -> np.ndarray:
    """Fraction of alerts of each kind for a field: stars towards the Galactic plane and bulge, asteroids
    towards the ecliptic, extragalactic transients away from the plane."""
    gl, gb = galactic(ra0, dec0)
    _, beta = ecliptic(ra0, dec0)
    plane = np.exp(-abs(gb) / 8.0)
    bulge = np.exp(-0.5 * (((gl + 180) % 360 - 180) / 12.0) ** 2 - 0.5 * (gb / 8.0) ** 2)
    sso = 0.015 + 0.09 * np.exp(-abs(beta) / 10.0)
    w = np.array([0.24 + 0.45 * plane + 0.3 * bulge, 0.2 * (1 - 0.85 * plane), 0.07 * (1 - 0.8 * plane), 0.012,
                  0.003 + 0.04 * max(plane, bulge), sso, 0.25 * sso, 0.22])
    return w / w.sum()


def sample(rng, kind: int, n: int, epoch: Epochs) -> dict:
    """n objects of one kind placed on the detectors of the current visit, before any detection cut."""
    return _SAMPLERS[kind](rng, n, epoch)


_PARAMS = ("period", "amp", "phase", "width", "depth2", "tau", "sf", "drw_t", "drw_d", "t0", "trise", "tfall", "te",
           "u0", "blend", "host_mag", "host_sigma", "host_dx", "host_dy", "bog_flux", "bog_lobe", "bog_sep",
           "trail_len", "trail_angle")


def _place(rng, n, epoch: Epochs, edge=None):
    """Uniform positions on the detectors of the current visit (or within 15 px of an edge where edge)."""
    det = rng.integers(0, N_DETECTORS, n)
    x, y = rng.uniform(0, DETECTOR_NX, n), rng.uniform(0, DETECTOR_NY, n)
    if edge is not None:
        near = rng.uniform(0, 15, n)
        side = rng.integers(0, 4, n)
        x = np.where(edge & (side == 0), near, np.where(edge & (side == 1), DETECTOR_NX - 1 - near, x))
        y = np.where(edge & (side == 2), near, np.where(edge & (side == 3), DETECTOR_NY - 1 - near, y))
    fx, fy = detector_to_focal(det, x, y)
    ra, dec = focal_to_sky(fx, fy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
    return ra, dec


def _host(rng, n, out, fraction, offset_scale):
    """Host galaxies (a fraction of sources): r magnitude, size and offset of its centre from the source [arcsec]."""
    has = rng.uniform(size=n) < fraction
    out["host_mag"] = np.where(has, rng.uniform(18.0, 23.0, n), np.nan)
    out["host_sigma"] = rng.uniform(0.3, 1.5, n)
    r = offset_scale * out["host_sigma"] * np.sqrt(rng.exponential(1.0, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    out["host_dx"], out["host_dy"] = r * np.cos(phi), r * np.sin(phi)


def _base(rng, kind, n, epoch, **extra):
    """A population's common columns; model parameters it does not use stay NaN (asteroid ones are absent)."""
    ra, dec = _place(rng, n, epoch, extra.pop("edge", None))
    out = {"kind": np.full(n, kind), "sub": np.zeros(n, int), "ra": ra, "dec": dec,
           "mag": np.full(n, np.nan), "color": np.zeros(n), "old": np.zeros(n, bool)}
    out.update({name: np.full(n, np.nan) for name in _PARAMS})
    out.update(extra)
    return out


def _sample_var(rng, n, epoch):
    o = _base(rng, VAR, n, epoch)
    sub = rng.choice(4, n, p=[0.25, 0.3, 0.15, 0.3])        # RR Lyrae, eclipsing, long-period, spotted/rotating
    o["sub"] = np.where(sub == 0, SAWTOOTH, np.where(sub == 1, ECLIPSE, SINE))
    kinds = [sub == 0, sub == 1, sub == 2]
    o["period"] = np.select(kinds, [rng.uniform(0.4, 0.8, n), np.exp(rng.uniform(np.log(0.3), np.log(10), n)),
                                    rng.uniform(80, 450, n)], np.exp(rng.uniform(0, np.log(30), n)))
    o["amp"] = np.select(kinds, [rng.uniform(0.4, 1.0, n), rng.uniform(0.1, 1.0, n), rng.uniform(0.5, 3.0, n)],
                         rng.uniform(0.03, 0.3, n))
    o["mag"] = np.where(sub == 3, power_law_mags(rng, n, 15.5, 20.0), power_law_mags(rng, n, 15.5, 22.5))
    o["color"] = np.where(sub == 2, rng.uniform(1.1, 1.6, n), rng.uniform(0.2, 1.3, n))
    o["phase"] = rng.uniform(0, 1, n)
    o["width"] = rng.uniform(0.03, 0.1, n)
    o["depth2"] = rng.uniform(0.1, 0.8, n)
    o["old"] = rng.uniform(size=n) < 0.5
    return o


def _sample_agn(rng, n, epoch):
    o = _base(rng, AGN, n, epoch, mag=power_law_mags(rng, n, 17.5, 22.5), color=rng.normal(0.2, 0.1, n))
    o["tau"] = np.exp(rng.uniform(np.log(50), np.log(500), n))
    o["sf"] = rng.uniform(0.15, 0.4, n)
    o["drw_t"] = np.full(n, epoch.mjd[0])
    o["drw_d"] = rng.normal(0, 1, n) * o["sf"] / np.sqrt(2)
    _host(rng, n, o, 1.0, 0.0)
    o["host_mag"] = o["mag"] - rng.uniform(-1.5, 1.0, n)
    o["old"] = rng.uniform(size=n) < 0.5
    return o


def _sample_transient(rng, n, epoch, kind):
    now = epoch.mjd[0]
    if kind == SN:
        o = _base(rng, SN, n, epoch, mag=power_law_mags(rng, n, 18.5, 23.5), color=rng.uniform(-0.1, 0.3, n))
        o["trise"], o["tfall"] = rng.uniform(1.5, 6.0, n), rng.uniform(15, 50, n)
        peak = rng.uniform(now - 80, now + 8, n)
        _host(rng, n, o, 0.9, 1.5)
    else:
        # Kilonova-like and other fast risers: 0.5 to 4 mag/day on the way up, gone within days.
        o = _base(rng, FAST, n, epoch, mag=rng.uniform(17.5, 21.5, n), color=rng.uniform(0.3, 1.2, n))
        o["trise"], o["tfall"] = rng.uniform(0.3, 1.2, n), rng.uniform(2.0, 8.0, n)
        peak = rng.uniform(now - 1, now + 4, n)
        _host(rng, n, o, 0.5, 2.0)
    o["t0"] = peak - o["trise"] * np.log(np.maximum(o["tfall"] / o["trise"] - 1.0, 1e-3))
    return o


def _sample_sn(rng, n, epoch):
    return _sample_transient(rng, n, epoch, SN)


def _sample_fast(rng, n, epoch):
    return _sample_transient(rng, n, epoch, FAST)


def _sample_ulens(rng, n, epoch):
    o = _base(rng, ULENS, n, epoch, mag=power_law_mags(rng, n, 16.5, 22.5), color=rng.uniform(0.5, 1.5, n))
    o["te"] = np.exp(rng.uniform(np.log(10), np.log(120), n))
    o["u0"] = np.exp(rng.uniform(np.log(0.02), np.log(1.0), n))
    o["t0"] = epoch.mjd[0] + rng.uniform(-1.5, 1.5, n) * o["te"]
    o["blend"] = np.where(rng.uniform(size=n) < 0.8, 1.0, rng.uniform(0.4, 1.0, n))
    return o


def _sample_bogus(rng, n, epoch):
    sub = rng.choice(6, n, p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.1])
    o = _base(rng, BOGUS, n, epoch, edge=sub == BOGUS_EDGE)
    o["sub"] = sub
    err = epoch.flux_err[0]
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    snr = 4.0 + 3.0 * rng.pareto(1.5, n)
    star = np.where((sub == BOGUS_RESIDUAL) | ((sub == BOGUS_DIPOLE) & (rng.uniform(size=n) < 0.6)),
                    np.where(sub == BOGUS_RESIDUAL, rng.uniform(13.5, 16.5, n), rng.uniform(15.5, 20.0, n)), np.nan)
    # A negative detection needs light in the template to go below: a star or a template artefact.
    negative = (sign < 0) & np.isin(sub, (BOGUS_EDGE, BOGUS_NOISE))
    star = np.where(negative, ZP_NJY - 2.5 * np.log10(snr * err * rng.uniform(1.5, 4.0, n)), star)
    o["mag"], o["color"] = star, rng.uniform(0.3, 1.2, n)
    o["bog_flux"] = np.select([sub == BOGUS_COSMIC_RAY, sub == BOGUS_STREAK, sub == BOGUS_RESIDUAL],
                              [snr * err, snr * err,
                               sign * rng.uniform(0.01, 0.05, n) * np.nan_to_num(mag_to_flux(star))],
                              sign * snr * err)
    o["bog_lobe"] = np.where(sub == BOGUS_DIPOLE, rng.uniform(6, 40, n) * err, np.nan)
    o["bog_sep"] = np.where(sub == BOGUS_DIPOLE, rng.uniform(0.2, 1.2, n), np.nan)          # arcsec
    o["trail_len"] = np.where(sub == BOGUS_STREAK, rng.uniform(5, 60, n), np.nan)           # arcsec
    o["trail_angle"] = rng.uniform(0, 180, n)
    return o


def _sample_sso(rng, n, epoch, known=True):
    """Asteroids seen at this epoch with a self-consistent heliocentric state and MPC orbit."""
    o = _base(rng, SSO if known else MOVER, n, epoch)
    o.update(draw_asteroids(rng, o["ra"], o["dec"], epoch.mjd[0]))
    return o


def _sample_mover(rng, n, epoch):
    return _sample_sso(rng, n, epoch, known=False)


_SAMPLERS: dict[int, Callable] = {VAR: _sample_var, AGN: _sample_agn, SN: _sample_sn, FAST: _sample_fast,
                                  ULENS: _sample_ulens, SSO: _sample_sso, MOVER: _sample_mover, BOGUS: _sample_bogus}
