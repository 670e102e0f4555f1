"""Bands, AB fluxes in nJy and the survey's photometric constants: single-visit depth, sky, colours, template,
PSF noise-equivalent area and power-law magnitude counts."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.camera import PIXEL_SCALE

BANDS = "ugrizy"
ZP_NJY = 31.4                 # AB magnitude of 1 nJy
M5 = np.array([23.7, 24.85, 24.45, 24.05, 23.45, 22.55])    # median single-visit 5-sigma depth
SKY_MAG = np.array([22.9, 22.2, 21.2, 20.5, 19.6, 18.6])    # dark sky, mag/arcsec^2
COLOR_K = np.array([2.2, 1.0, 0.0, -0.35, -0.55, -0.65])    # band offset per unit g-r colour
HOST_COLOR = 0.7             # g-r of host galaxies
_TEMPLATE_FWHM = 0.7          # arcsec
_TEMPLATE_DEPTH = 1.5         # template (coadd) depth beyond a single visit, mag
TEMPLATE_COADD = 16          # visits in a template: its Poisson variance per unit flux is 1/16 a visit's


def mag_to_flux(mag):
    return 10.0 ** (-0.4 * (np.asarray(mag) - ZP_NJY))


def psf_nea(sigma_px):
    """Noise-equivalent area [px^2] of the double-Gaussian PSF used in cutouts."""
    return 4 * np.pi * sigma_px**2 / 0.8845


TEMPLATE_ERR = mag_to_flux(M5 + _TEMPLATE_DEPTH) / 5.0           # per band [nJy]
TEMPLATE_SIGMA_PX = _TEMPLATE_FWHM / 2.3548 / PIXEL_SCALE


def band_flux(mag, color):
    """Flux per band (n, 6) of a source with r magnitude mag and g-r colour color."""
    return mag_to_flux(mag[:, None] + color[:, None] * COLOR_K[None, :])


def power_law_mags(rng, n, bright, faint, slope=0.24):
    """Magnitudes between bright and faint whose counts grow by 10**slope per magnitude (faint ones dominate)."""
    a = slope * np.log(10)
    return bright + np.log1p(rng.uniform(size=n) * np.expm1(a * (faint - bright))) / a
