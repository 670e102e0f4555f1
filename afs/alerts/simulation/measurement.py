"""Measurement at epochs: which detector sees each object, and its difference, science, template and
aperture photometry with science, template and subtraction noise."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.camera import PIXEL_SCALE, focal_to_detector, sky_to_focal
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import BOGUS, BOGUS_DIPOLE
from afs.alerts.simulation.photometry import (
    HOST_COLOR, TEMPLATE_COADD, TEMPLATE_ERR, TEMPLATE_SIGMA_PX, band_flux, psf_nea,
)


def coverage(o: dict, idx, epochs: Epochs):
    """Detector, x, y (k, E) of objects idx at each epoch's pointing (-1 where off the focal plane)."""
    fx, fy = sky_to_focal(o["ra"][idx, None], o["dec"][idx, None], epochs.ra0[None, :], epochs.dec0[None, :],
                          epochs.rot[None, :])
    return focal_to_detector(fx, fy)


def measure(rng, o: dict, diff: np.ndarray, epochs: Epochs) -> dict[str, np.ndarray]:
    """Photometry (n, E) of objects o at epochs: difference, science, template and aperture fluxes and the
    detection S/N. psfFlux = scienceFlux - templateFlux up to host PSF mismatch and subtraction residuals."""
    band = epochs.band[None, :]
    n = len(diff)
    rows = np.arange(n)[:, None]
    point = o["tmpl"][rows, band]
    host_t = np.nan_to_num(_host_fit(o, np.arange(n), epochs.band, np.full((n, len(epochs)), TEMPLATE_SIGMA_PX)))
    host_s = np.nan_to_num(_host_fit(o, np.arange(n), epochs.band, np.broadcast_to(epochs.sigma_px, (n, len(epochs)))))
    tmpl = point + host_t
    science = point + host_s + diff
    gain = epochs.gain[None, :]
    var_sci = epochs.flux_err[None, :] ** 2 + gain * np.maximum(science, 0)
    var_tmpl = TEMPLATE_ERR[band] ** 2 + gain / TEMPLATE_COADD * np.maximum(tmpl, 0)
    resid = 0.005 * tmpl
    n_sci = rng.standard_normal(diff.shape) * np.sqrt(var_sci)
    n_tmpl = o["tmpl_noise"][rows, band] * np.sqrt(var_tmpl)
    err = np.sqrt(var_sci + var_tmpl + resid**2)
    psf = diff + n_sci - n_tmpl + resid * rng.standard_normal(diff.shape)
    snr = np.abs(psf) / err * np.exp(0.03 * rng.standard_normal(diff.shape))
    lobes = np.flatnonzero((o["kind"] == BOGUS) & (o["sub"] == BOGUS_DIPOLE))
    snr[lobes] = np.maximum(snr[lobes], o["bog_lobe"][lobes, None] / err[lobes])
    area = np.pi * 12.0**2
    sky_px = epochs.flux_err[None, :] ** 2 / epochs.nea[None, :] + TEMPLATE_ERR[band] ** 2 / psf_nea(TEMPLATE_SIGMA_PX)
    var_ap = sky_px * area + gain * np.maximum(science, 0)
    return {"diff": diff, "psf": psf, "err": err, "snr": snr, "sci": science + n_sci, "sci_err": np.sqrt(var_sci),
            "tmpl": tmpl + n_tmpl, "tmpl_err": np.sqrt(var_tmpl),
            "ap": 0.97 * diff + np.sqrt(var_ap) * rng.standard_normal(diff.shape), "ap_err": np.sqrt(var_ap)}


def _host_fit(o: dict, idx, band, sigma_px) -> np.ndarray:
    """PSF-fit flux of the host galaxy at the source position, for a PSF of core sigma sigma_px."""
    host = np.nan_to_num(band_flux(np.nan_to_num(o["host_mag"][idx], nan=99.0), np.full(len(idx), HOST_COLOR)))
    flux = np.take_along_axis(host, np.broadcast_to(band, np.shape(sigma_px)).astype(int), axis=1) \
        if np.ndim(sigma_px) == 2 else host[:, band]
    sp = np.asarray(sigma_px) * PIXEL_SCALE
    sh = o["host_sigma"][idx][:, None]
    d2 = (o["host_dx"][idx] ** 2 + o["host_dy"][idx] ** 2)[:, None]
    return flux * 2 * sp**2 / (sh**2 + 2 * sp**2) * np.exp(-d2 / (2 * (sh**2 + 2 * sp**2)))
