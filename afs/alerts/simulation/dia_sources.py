"""diaSource and diaForcedSource columns: measured positions, fluxes, shapes, trails, dipoles, pixel flags,
reliability."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.camera import DETECTOR_NX, DETECTOR_NY, PIXEL_SCALE, focal_to_detector, sky_to_focal
from afs.alerts.simulation.clock import EXPOSURE
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.ids import FORCED_BIT, source_ids
from afs.alerts.simulation.kinds import (
    BOGUS, BOGUS_COSMIC_RAY, BOGUS_DIPOLE, BOGUS_EDGE, BOGUS_NOISE, BOGUS_RESIDUAL, BOGUS_STREAK, MOVER, SSO,
)
from afs.alerts.simulation.photometry import BANDS, mag_to_flux
from afs.alerts.simulation.records import DIA_SOURCE

RELIABILITY_VERSION = "rbResnet50-v1"
SOURCE_CONSTANTS = {"reliabilityVersion": RELIABILITY_VERSION, "trailAlgorithm": 1, "timeWithdrawnMjdTai": None}
_FLAG_COLUMNS = [c.name for c in DIA_SOURCE if c.type == "boolean"]


def dia_source_table(rng, o: dict, oi: np.ndarray, epochs: Epochs, ei: np.ndarray, m: dict[str, np.ndarray],
                     ra: np.ndarray, dec: np.ndarray) -> dict[str, np.ndarray]:
    """diaSource columns for rows (object oi measured at epoch ei) with photometry m and true positions."""
    n = len(oi)
    kind, sub = o["kind"][oi], o["sub"][oi]
    bogus = kind == BOGUS
    is_sub = {s: bogus & (sub == s) for s in range(6)}
    moving = np.isin(kind, (SSO, MOVER))
    ep = epochs.take(ei)
    sigma_arcsec = ep.fwhm / 2.3548
    snr = m["snr"]
    pos_err = np.hypot(sigma_arcsec / np.maximum(snr, 1.0), 0.01)                    # arcsec
    cosd = np.cos(np.radians(dec))
    ra_m = ra + rng.standard_normal(n) * pos_err / 3600 / cosd
    dec_m = dec + rng.standard_normal(n) * pos_err / 3600
    det, x, y = focal_to_detector(*sky_to_focal(ra_m, dec_m, ep.ra0, ep.dec0, ep.rot))
    det0, x0, y0 = focal_to_detector(*sky_to_focal(ra, dec, ep.ra0, ep.dec0, ep.rot))
    moved_off = det != det0                          # a centroid error across a detector edge: keep the detector
    det, x, y = np.where(moved_off, det0, det), np.where(moved_off, x0, x), np.where(moved_off, y0, y)
    x, y = np.clip(x, 0, DETECTOR_NX - 1), np.clip(y, 0, DETECTOR_NY - 1)

    rate_ra = o["rate_ra"][oi] if "rate_ra" in o else np.zeros(n)          # asteroids only
    rate_dec = o["rate_dec"][oi] if "rate_dec" in o else np.zeros(n)
    trail = np.where(moving, np.hypot(rate_ra, rate_dec) * EXPOSURE / 86400 * 3600,
                     np.abs(rng.normal(0, 0.15 + 1 / np.maximum(snr, 1))))
    trail = np.where(is_sub[BOGUS_STREAK], o["trail_len"][oi], trail)
    trail_angle = np.where(moving, np.degrees(np.arctan2(rate_ra, rate_dec)) % 180,
                           np.where(is_sub[BOGUS_STREAK], o["trail_angle"][oi], rng.uniform(0, 180, n)))
    sig_px = ep.sigma_px
    bbox = np.rint((6 + 2.5 * np.log2(1 + snr / 5)) * sig_px * np.exp(0.15 * rng.standard_normal(n))
                   + trail / PIXEL_SCALE).astype(int)
    ndata = (0.7 * bbox**2).astype(int)
    var_px = m["err"] ** 2 / ep.nea

    chi2 = ndata * np.exp(0.1 * rng.standard_normal(n)) * np.where(bogus, rng.uniform(1.5, 6, n), 1.0)
    dipole_try = is_sub[BOGUS_DIPOLE] | (~bogus & ~moving & (rng.uniform(size=n) < 0.08))
    # A dipole's PSF flux is its lobe difference times the PSF's overlap with itself shifted by half the separation.
    sep = np.where(is_sub[BOGUS_DIPOLE], o["bog_sep"][oi], np.abs(rng.normal(0, 0.08, n)))
    overlap = np.exp(-((sep / 2 / PIXEL_SCALE) ** 2) / (4 * sig_px**2))
    lobe = np.where(is_sub[BOGUS_DIPOLE], o["bog_lobe"][oi], np.abs(m["psf"]) * 0.55)
    lobe_diff = np.where(is_sub[BOGUS_DIPOLE], m["psf"] / overlap, m["psf"])

    psf_moment = sigma_arcsec**2
    e1, e2 = 0.05 * rng.standard_normal(n), 0.05 * rng.standard_normal(n)
    extra = (trail**2 / 12)
    ang = np.radians(trail_angle)
    reliability = np.where(bogus, np.where(rng.uniform(size=n) < 0.05, rng.beta(4, 2, n), rng.beta(1.2, 6, n)),
                           np.clip(rng.beta(9, 1.0, n) - 0.3 * np.exp(-(snr - 5) / 4), 0.0, 1.0))
    extendedness = np.select([is_sub[BOGUS_COSMIC_RAY], is_sub[BOGUS_DIPOLE] | is_sub[BOGUS_RESIDUAL],
                              is_sub[BOGUS_STREAK] | moving & (trail > 1.5), is_sub[BOGUS_EDGE] | is_sub[BOGUS_NOISE]],
                             [rng.uniform(0, 0.05, n), rng.beta(4, 2, n), rng.beta(5, 1.5, n), rng.beta(2, 2, n)],
                             rng.beta(1.2, 12, n))
    processed = ep.mjd + (EXPOSURE / 2 + rng.uniform(40, 200, n)) / 86400
    saturated = ~moving & (m["tmpl"] > mag_to_flux(16.0))
    flags = {name: np.zeros(n, bool) for name in _FLAG_COLUMNS}
    flags.update({
        "centroid_flag": is_sub[BOGUS_EDGE] & (rng.uniform(size=n) < 0.3),
        "apFlux_flag_apertureTruncated": (x < 12) | (y < 12) | (x > DETECTOR_NX - 13) | (y > DETECTOR_NY - 13),
        "isNegative": m["psf"] < 0,
        "psfFlux_flag_edge": is_sub[BOGUS_EDGE], "forced_PsfFlux_flag_edge": is_sub[BOGUS_EDGE],
        "trail_flag_edge": is_sub[BOGUS_EDGE] | is_sub[BOGUS_STREAK] & (rng.uniform(size=n) < 0.4),
        "isDipole": is_sub[BOGUS_DIPOLE], "dipoleFitAttempted": dipole_try,
        "pixelFlags_bad": rng.uniform(size=n) < 0.01,
        "pixelFlags_cr": is_sub[BOGUS_COSMIC_RAY], "pixelFlags_crCenter": is_sub[BOGUS_COSMIC_RAY],
        "pixelFlags_edge": is_sub[BOGUS_EDGE], "pixelFlags_nodata": is_sub[BOGUS_EDGE] & (rng.uniform(size=n) < 0.2),
        "pixelFlags_interpolated": is_sub[BOGUS_RESIDUAL] | (rng.uniform(size=n) < 0.04),
        "pixelFlags_interpolatedCenter": is_sub[BOGUS_RESIDUAL] & (rng.uniform(size=n) < 0.5),
        "pixelFlags_saturated": is_sub[BOGUS_RESIDUAL] | saturated,
        "pixelFlags_saturatedCenter": (is_sub[BOGUS_RESIDUAL] | saturated) & (rng.uniform(size=n) < 0.6),
        "pixelFlags_suspect": is_sub[BOGUS_NOISE] & (rng.uniform(size=n) < 0.2) | (rng.uniform(size=n) < 0.02),
        "pixelFlags_streak": is_sub[BOGUS_STREAK], "pixelFlags_streakCenter": is_sub[BOGUS_STREAK],
        "glint_trail": is_sub[BOGUS_STREAK] & (rng.uniform(size=n) < 0.3),
    })
    slot = o["slot"][oi]
    nan = np.full(n, np.nan)
    table = {
        "diaSourceId": source_ids(ep.visit, slot), "visit": ep.visit, "detector": det,
        "diaObjectId": np.where(kind == SSO, -1, o["object_id"][oi]),
        "ssObjectId": np.where(kind == SSO, o["ss_id"][oi] if "ss_id" in o else -1, -1),
        "parentDiaSourceId": np.full(n, -1),
        "midpointMjdTai": ep.mjd, "exposureTime": np.full(n, EXPOSURE),
        "ra": ra_m, "raErr": pos_err / 3600, "dec": dec_m, "decErr": pos_err / 3600,
        "ra_dec_Cov": (pos_err / 3600) ** 2 * 0.05 * rng.standard_normal(n),
        "x": x, "xErr": pos_err / PIXEL_SCALE, "y": y, "yErr": pos_err / PIXEL_SCALE,
        "apFlux": m["ap"], "apFluxErr": m["ap_err"], "snr": snr,
        "psfFlux": m["psf"], "psfFluxErr": m["err"],
        "psfLnL": -0.5 * chi2 - 0.5 * ndata * np.log(2 * np.pi * var_px), "psfChi2": chi2, "psfNdata": ndata,
        "trailFlux": m["psf"] * (1 + 0.03 * rng.standard_normal(n)), "trailFluxErr": m["err"] * 1.05,
        "trailRa": ra_m + rng.standard_normal(n) * pos_err / 3600 / cosd, "trailRaErr": pos_err * 1.2 / 3600,
        "trailDec": dec_m + rng.standard_normal(n) * pos_err / 3600, "trailDecErr": pos_err * 1.2 / 3600,
        "trailLength": trail, "trailLengthErr": 2 * pos_err + 0.02 * trail,
        "trailAngle": trail_angle, "trailAngleErr": np.degrees(np.minimum(np.pi, pos_err / np.maximum(trail, 0.05))),
        "trailChi2": chi2 * rng.uniform(0.9, 1.0, n), "trailNdata": ndata,
        "dipoleMeanFlux": np.where(dipole_try, lobe, nan),
        "dipoleMeanFluxErr": np.where(dipole_try, m["err"] * 0.8, nan),
        "dipoleFluxDiff": np.where(dipole_try, lobe_diff, nan),
        "dipoleFluxDiffErr": np.where(dipole_try, m["err"] * 1.2, nan),
        "dipoleLength": np.where(dipole_try, sep, nan),
        "dipoleAngle": np.where(dipole_try, rng.uniform(0, 180, n), nan),
        "dipoleChi2": np.where(dipole_try, chi2 * rng.uniform(0.7, 1.1, n), nan),
        "dipoleNdata": np.where(dipole_try, ndata, 0),
        "scienceFlux": m["sci"], "scienceFluxErr": m["sci_err"],
        "templateFlux": m["tmpl"], "templateFluxErr": m["tmpl_err"],
        "ixx": psf_moment * (1 + e1) + extra * np.sin(ang) ** 2,
        "iyy": psf_moment * (1 - e1) + extra * np.cos(ang) ** 2,
        "ixy": psf_moment * e2 + extra * np.sin(ang) * np.cos(ang),
        "ixxPSF": psf_moment * 1.01, "iyyPSF": psf_moment * 0.99, "ixyPSF": psf_moment * 0.005,
        "extendedness": extendedness, "reliability": reliability, "band": np.array(list(BANDS))[ep.band],
        "timeProcessedMjdTai": processed, "bboxSize": bbox,
        "_oi": oi, "_band": ep.band,
    }
    table.update(flags)
    return table


def forced_source_table(rng, o: dict, oi, epochs: Epochs, ei, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """diaForcedSource columns: forced PSF photometry at the diaObject position in every covered visit."""
    ep = epochs.take(ei)
    det, _, _ = focal_to_detector(*sky_to_focal(o["ra"][oi], o["dec"][oi], ep.ra0, ep.dec0, ep.rot))
    n = len(oi)
    return {
        "diaForcedSourceId": source_ids(ep.visit, o["slot"][oi] | FORCED_BIT), "diaObjectId": o["object_id"][oi],
        "ra": o["ra"][oi], "dec": o["dec"][oi], "visit": ep.visit, "detector": det,
        "psfFlux": m["psf"] + 0.1 * m["err"] * rng.standard_normal(n), "psfFluxErr": m["err"],
        "midpointMjdTai": ep.mjd, "scienceFlux": m["sci"], "scienceFluxErr": m["sci_err"],
        "band": np.array(list(BANDS))[ep.band],
        "timeProcessedMjdTai": ep.mjd + (EXPOSURE / 2 + rng.uniform(40, 200, n)) / 86400,
        "_oi": oi, "_band": ep.band,
    }
