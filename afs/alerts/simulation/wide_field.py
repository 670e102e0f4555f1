"""A simulated parent image around an alert, larger than its cutout, for multi-resolution cutouts.

Why: a multi-resolution cutout (afs.alerts.multires) needs more sky than the alert carries. In production it
would come from Rubin's image cutout service; for development, tests and the demo this source renders it,
deterministically from the alert alone (nothing else of the simulated visit survives in the record).

What it draws, on the alert's own pixel lattice and local linear TAN WCS (the cutout's, extended):

- the alert's cutout itself, pasted pixel for pixel, so the centre of the field is exactly what the alert shows;
- outside it, Gaussian sky noise with the cutout's sky variance (the median of the UNCERT border);
- the wings of the alert's source beyond the cutout: the catalogue flux of this image (psfFlux, scienceFlux or
  templateFlux) times the cutout's own PSFIMAGE, at the source pixel;
- field stars on the science and template images (not the difference: they subtract), the same stars with the
  same fluxes on both, drawn with each image's PSFIMAGE at whole-pixel positions: Poisson counts of
  ``10 + 150 exp(-|b| / 8 deg)`` per arcmin^2 (b galactic latitude), magnitudes 16 to 24.5 with the
  simulator's power-law counts. Stars whose PSF would reach into the pasted cutout are left out, so no star
  is cut by its edge.

A host galaxy appears only inside the pasted cutout (the record does not carry its size or offset).
Randomness is seeded by the diaSourceId (stars) and the diaSourceId and kind (noise).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from astropy import wcs
from astropy.nddata import CCDData

from afs.alerts.cutouts import local_wcs
from afs.alerts.simulation.photometry import mag_to_flux, power_law_mags
from afs.alerts.simulation.sky import galactic

_KIND_FLUX = {"difference": "psfFlux", "science": "scienceFlux", "template": "templateFlux"}
_STARS_AT_POLE, _STARS_IN_PLANE, _PLANE_SCALE_DEG = 10.0, 150.0, 8.0     # per arcmin^2, brighter than 24.5
_BRIGHT, _FAINT = 16.0, 24.5


class SimulatedField:
    """FieldSource that renders the parent image from the alert itself (see the module docstring)."""

    def parent(self, record: Mapping[str, Any], kind: str, side: int) -> tuple[np.ndarray, wcs.WCS]:
        """A side x side float32 image [nJy] and its WCS, centred on the pixel corner nearest the alert."""
        if kind not in _KIND_FLUX:
            raise ValueError(f"kind must be one of {sorted(_KIND_FLUX)}, got {kind!r}")
        blob = record.get(f"cutout{kind.title()}")
        if not blob:
            raise ValueError(f"the alert has no {kind} cutout to extend")
        try:
            cutout = CCDData.read(io.BytesIO(blob))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"the {kind} cutout is not a readable CCDData FITS file: {exc}") from None
        if cutout.uncertainty is None or cutout.psf is None or cutout.wcs is None:
            raise ValueError(f"the {kind} cutout lacks its WCS, UNCERT or PSFIMAGE")
        source = record["diaSource"]
        position = np.array(cutout.wcs.world_to_pixel_values(source["ra"], source["dec"]), dtype=float)
        origin = np.floor(position + 1.0).astype(int) - side // 2     # parent (0, 0) in cutout pixels (x, y)
        field_wcs = local_wcs(tuple(cutout.wcs.wcs.crval), tuple(cutout.wcs.wcs.crpix - origin),
                              cutout.wcs.pixel_scale_matrix, side)

        dia_source_id = int(record["diaSourceId"])
        variance = np.asarray(cutout.uncertainty.array, dtype=float)
        border = np.concatenate([variance[0], variance[-1], variance[1:-1, 0], variance[1:-1, -1]])
        noise = np.random.default_rng([dia_source_id, list(_KIND_FLUX).index(kind)])
        image = noise.standard_normal((side, side), dtype=np.float32) * np.float32(np.sqrt(np.median(border)))
        psf = np.asarray(cutout.psf, dtype=np.float32)
        centre = np.rint(position).astype(int) - origin
        _add_stamp(image, psf * np.float32(np.nan_to_num(source.get(_KIND_FLUX[kind]) or 0.0)), *centre)
        if kind != "difference":
            low, high = -origin - psf.shape[0] // 2, -origin + np.array(cutout.shape[::-1]) + psf.shape[0] // 2
            for x, y, flux in _stars(dia_source_id, source["ra"], source["dec"], field_wcs, side):
                if not (low[0] <= x < high[0] and low[1] <= y < high[1]):
                    _add_stamp(image, psf * np.float32(flux), x, y)
        _paste(image, np.asarray(cutout.data, dtype=np.float32), -origin)
        return image, field_wcs


def _stars(dia_source_id: int, ra: float, dec: float, field_wcs: wcs.WCS,
           side: int) -> Iterator[tuple[int, int, float]]:
    """(x, y, flux [nJy]) of the field stars: whole parent pixels, independent of the image kind."""
    rng = np.random.default_rng([dia_source_id, len(_KIND_FLUX)])
    _, b = galactic(ra, dec)
    density = _STARS_AT_POLE + _STARS_IN_PLANE * np.exp(-abs(float(b)) / _PLANE_SCALE_DEG)
    scale_arcmin = np.sqrt(abs(np.linalg.det(field_wcs.pixel_scale_matrix))) * 60.0
    count = rng.poisson(density * (side * scale_arcmin) ** 2)
    xs, ys = rng.integers(0, side, count), rng.integers(0, side, count)
    fluxes = mag_to_flux(power_law_mags(rng, count, _BRIGHT, _FAINT))
    return zip(xs.tolist(), ys.tolist(), fluxes.tolist())


def _add_stamp(image: np.ndarray, stamp: np.ndarray, x: int, y: int) -> None:
    """Add an odd-sided stamp centred on pixel (x, y), clipped at the image edges."""
    _paste(image, stamp, np.array([x, y]) - stamp.shape[0] // 2, add=True)


def _paste(image: np.ndarray, patch: np.ndarray, corner: np.ndarray, add: bool = False) -> None:
    """Write (or add) patch with its pixel (0, 0) at image pixel corner (x, y), clipped at the edges."""
    x0, y0 = (int(c) for c in corner)
    ys, xs = slice(max(y0, 0), min(y0 + patch.shape[0], image.shape[0])), \
        slice(max(x0, 0), min(x0 + patch.shape[1], image.shape[1]))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    part = patch[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
    if add:
        image[ys, xs] += part
    else:
        image[ys, xs] = part
