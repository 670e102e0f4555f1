"""True fluxes over time: periodic variables, AGN damped random walks, Bazin transients, microlensing and
asteroid rotation, as difference fluxes against the template's mean state."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.kinds import AGN, BOGUS, ECLIPSE, FAST, MOVER, SAWTOOTH, SN, SSO, ULENS, VAR
from afs.alerts.simulation.photometry import band_flux, mag_to_flux

_PULSE_K = np.array([1.35, 1.2, 1.0, 0.85, 0.75, 0.7])        # pulsation amplitude per band
_AGN_K = np.array([1.6, 1.35, 1.0, 0.85, 0.75, 0.7])          # AGN variability amplitude per band
_FALL_K = np.array([0.6, 0.8, 1.0, 1.2, 1.35, 1.45])          # transient decline time per band
_SSO_COLOR = np.array([1.3, 0.35, -0.2, -0.35, -0.35, -0.3])  # asteroid band minus V


def template_flux(o: dict) -> np.ndarray:
    """Flux per band (n, 6) of the object itself in the template (the mean state of a variable)."""
    kind, n = o["kind"], len(o["kind"])
    in_template = np.isin(kind, (VAR, AGN, ULENS, BOGUS))[:, None]
    flux = np.where(in_template, np.nan_to_num(band_flux(o["mag"], o["color"])), 0.0)
    var = np.flatnonzero(kind == VAR)
    if len(var):
        phases = np.linspace(0, 1, 32, endpoint=False)
        s = _var_shape(o["sub"][var, None], phases[None, :], o["width"][var, None], o["depth2"][var, None])
        amp = o["amp"][var, None, None] * np.where(o["sub"][var] == ECLIPSE, 1.0, 0.0)[:, None, None]
        amp = amp + (o["amp"][var] * (o["sub"][var] != ECLIPSE))[:, None, None] * _PULSE_K[None, :, None]
        flux[var] *= np.mean(10 ** (-0.4 * amp * s[:, None, :]), axis=2)
    return flux + np.zeros((n, 6))


def difference_flux(rng, o: dict, t: np.ndarray, band: np.ndarray) -> np.ndarray:
    """True difference flux (n, E) of any kind; AGN walk from their anchor, others are closed-form."""
    out = _model_flux(o, t, band)
    agn = np.flatnonzero(o["kind"] == AGN)
    if len(agn):
        at_anchor = np.all(np.abs(t[None, :] - o["drw_t"][agn, None]) < 1e-9, axis=0)
        d = np.where(at_anchor[None, :], o["drw_d"][agn, None], 0.0)
        if not at_anchor.all():
            d[:, ~at_anchor] = _drw(rng, o, agn, t[~at_anchor])
        out[agn] = _agn_flux(o, agn, d, band)
    bogus = np.flatnonzero(o["kind"] == BOGUS)
    out[bogus] = o["bog_flux"][bogus, None]
    sso = np.flatnonzero(np.isin(o["kind"], (SSO, MOVER)))
    if len(sso):
        mag = o["vmag"][sso, None] + _SSO_COLOR[band][None, :] + o["rot_amp"][sso, None] * np.sin(
            2 * np.pi * (t[None, :] / o["rot_period"][sso, None] + o["phase"][sso, None]))
        out[sso] = mag_to_flux(mag)
    return out


def _model_flux(o: dict, t: np.ndarray, band: np.ndarray) -> np.ndarray:
    """True difference flux (n, E) of non-stochastic kinds at times t in bands band (template subtracted)."""
    kind = o["kind"]
    n, e = len(kind), len(t)
    out = np.zeros((n, e))
    point = band_flux(np.nan_to_num(o["mag"], nan=99.0), o["color"])
    tmpl = o["tmpl"]
    var = np.flatnonzero(kind == VAR)
    if len(var):
        sub = o["sub"][var, None]
        phase = ((t[None, :] - 60000.0) / o["period"][var, None] + o["phase"][var, None]) % 1.0
        k = np.where(sub == ECLIPSE, 1.0, _PULSE_K[band][None, :])
        s = _var_shape(sub, phase, o["width"][var, None], o["depth2"][var, None])
        out[var] = point[var][:, band] * 10 ** (-0.4 * o["amp"][var, None] * k * s) - tmpl[var][:, band]
    tr = np.flatnonzero(np.isin(kind, (SN, FAST)))
    if len(tr):
        # Redder bands decline more slowly; every band still declines more slowly than it rises.
        tfall = np.maximum(o["tfall"][tr, None] * _FALL_K[band][None, :], 1.5 * o["trise"][tr, None])
        out[tr] = point[tr][:, band] * _bazin(t[None, :], o["t0"][tr, None], o["trise"][tr, None], tfall)
    ml = np.flatnonzero(kind == ULENS)
    if len(ml):
        u = np.hypot(o["u0"][ml, None], (t[None, :] - o["t0"][ml, None]) / o["te"][ml, None])
        magnification = (u**2 + 2) / (u * np.sqrt(u**2 + 4))
        out[ml] = o["blend"][ml, None] * point[ml][:, band] * (magnification - 1.0)
    return out


def _bazin(t, t0, trise, tfall):
    """Rise-and-decline light curve normalised to a peak of 1 (numerically stable far from t0)."""
    x = t - t0
    xp = trise * np.log(np.maximum(tfall / trise - 1.0, 1e-3))
    return np.exp(-x / tfall - np.logaddexp(0.0, -x / trise) + xp / tfall + np.logaddexp(0.0, -xp / trise))


def _var_shape(sub, phase, width, depth2):
    """Magnitude offset per unit amplitude: sine, RR Lyrae sawtooth (fast rise) or two eclipses."""
    saw = np.where(phase < 0.15, 0.5 - phase / 0.15, -0.5 + (phase - 0.15) / 0.85)
    wrapped = (phase + 0.5) % 1.0 - 0.5
    ecl = np.exp(-0.5 * (wrapped / width) ** 2) + depth2 * np.exp(-0.5 * ((np.abs(wrapped) - 0.5) / width) ** 2)
    return np.select([sub == SAWTOOTH, sub == ECLIPSE], [saw, ecl], 0.5 * np.sin(2 * np.pi * phase))


def _drw(rng, o: dict, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Damped-random-walk magnitude offsets (k, E) at times t, conditioned on each AGN's anchor state.

    The walk is Markov and time-reversible, so it steps outwards from the anchor, into the past for
    history and into the future for a revisit.
    """
    tau, sigma = o["tau"][idx], o["sf"][idx] / np.sqrt(2)
    anchor_t, anchor_d = o["drw_t"][idx], o["drw_d"][idx]
    out = np.zeros((len(idx), len(t)))
    offset = t - anchor_t[0]                  # objects drawn together share their anchor time
    for side in (np.flatnonzero(offset < 0)[::-1], np.flatnonzero(offset >= 0)):
        prev_t, prev_d = anchor_t, anchor_d
        for j in side:
            a = np.exp(-np.abs(t[j] - prev_t) / tau)
            prev_d = prev_d * a + sigma * np.sqrt(1 - a**2) * rng.standard_normal(len(idx))
            prev_t = np.full(len(idx), t[j])
            out[:, j] = prev_d
    return out


def _agn_flux(o: dict, idx: np.ndarray, d: np.ndarray, band: np.ndarray) -> np.ndarray:
    point = band_flux(o["mag"][idx], o["color"][idx])[:, band]
    return point * (10 ** (-0.4 * d * _AGN_K[band][None, :]) - 1.0)
