"""The visits of one field (pointing, band, seeing, depth) and the image properties they imply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afs.alerts.simulation.camera import PIXEL_SCALE
from afs.alerts.simulation.photometry import M5, SKY_MAG, mag_to_flux, psf_nea


@dataclass
class Epochs:
    """Visits (past or simulated) of one field, in time order."""

    visit: np.ndarray
    mjd: np.ndarray
    band: np.ndarray
    ra0: np.ndarray
    dec0: np.ndarray
    rot: np.ndarray
    fwhm: np.ndarray
    m5: np.ndarray
    simulated: np.ndarray

    def __len__(self) -> int:
        return len(self.mjd)

    def take(self, idx) -> Epochs:
        return Epochs(**{k: np.atleast_1d(v[idx]) for k, v in vars(self).items()})

    def extend(self, other: Epochs) -> Epochs:
        return Epochs(**{k: np.concatenate([v, getattr(other, k)]) for k, v in vars(self).items()})

    @property
    def sigma_px(self) -> np.ndarray:
        """Science PSF core sigma [px]."""
        return self.fwhm / 2.3548 / PIXEL_SCALE

    @property
    def flux_err(self) -> np.ndarray:
        """Sky-limited PSF flux error of the science image [nJy]."""
        return mag_to_flux(self.m5) / 5.0

    @property
    def nea(self) -> np.ndarray:
        return psf_nea(self.sigma_px)

    @property
    def gain(self) -> np.ndarray:
        """nJy per photo-electron: the sky's Poisson variance fixes it."""
        sky_px = mag_to_flux(SKY_MAG[self.band]) * PIXEL_SCALE**2
        return self.flux_err**2 / self.nea / sky_px


def observing_conditions(rng, band: np.ndarray):
    """Seeing [arcsec] and 5-sigma depth of visits in these bands."""
    fwhm = np.clip(0.8 * np.exp(0.2 * rng.standard_normal(band.shape)), 0.5, 2.0)
    m5 = M5[band] + 2.5 * np.log10(0.8 / fwhm) + 0.2 * rng.standard_normal(band.shape)
    return fwhm, m5
