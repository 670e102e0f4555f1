"""PNG previews of alert cutouts, for people looking at an alert in a browser rather than a FITS viewer.

The preview shows a cutout's PRIMARY image (nJy) in 8-bit grey, north roughly up as a FITS viewer shows it
(FITS row 0 is the bottom row, PNG row 0 the top, so rows are flipped), upscaled by an integer factor with
nearest-neighbour so that every native pixel stays a sharp square and a 30 px cutout is at least
``MIN_PREVIEW_PX`` wide. NaN pixels are transparent (grey + alpha), so they cannot be read as a flux.

Two stretches, both from astropy.visualization:

- signed (difference images): a diverging scale symmetric around zero, limits +-max(|zscale limits|) and an
  asinh stretch on |value|; zero is mid-grey (128), positive pixels lighter, negative darker, so a fading
  source or a dipole reads as such.
- unsigned (science, template): the zscale interval with an asinh stretch, the usual astronomical display.

Pixels alone cannot tell a background-subtracted science image from a difference image, so callers that know
the kind should say so (``signed=kind == "difference"``). With ``signed=None`` the header keyword ``CUTKIND``
(written by ``afs.alerts.multires``) decides if present; otherwise the image counts as signed only when it holds
a clearly negative source (``NEGATIVE_PIXELS`` pixels below ``NEGATIVE_SIGMA`` robust sigma), which a science
or template image cannot.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image

MIN_PREVIEW_PX = 256
ASINH_A = 0.1                 # astropy's default softening: linear near zero, logarithmic for bright sources
NEGATIVE_SIGMA = 5.0
NEGATIVE_PIXELS = 3


def png_preview(fits_bytes: bytes, *, signed: bool | None = None) -> bytes:
    """PNG bytes of a cutout's PRIMARY image; ValueError if the bytes are not a readable 2-D FITS image."""
    image, header = read_primary(fits_bytes)
    if signed is None:
        signed = header["CUTKIND"] == "difference" if "CUTKIND" in header else _has_negative_source(image)
    finite = np.isfinite(image)
    levels = _signed_levels(image, finite) if signed else _unsigned_levels(image, finite)
    grey = np.rint(np.where(finite, levels, 0.0) * 255).astype(np.uint8)
    factor = max(1, -(-MIN_PREVIEW_PX // max(image.shape)))
    planes = [grey] if finite.all() else [grey, np.where(finite, 255, 0).astype(np.uint8)]
    big = [np.repeat(np.repeat(np.flipud(p), factor, axis=0), factor, axis=1) for p in planes]
    picture = Image.fromarray(big[0], "L") if len(big) == 1 else Image.fromarray(np.dstack(big), "LA")
    with io.BytesIO() as out:
        picture.save(out, format="PNG")
        return out.getvalue()


def read_primary(fits_bytes: bytes) -> tuple[np.ndarray, fits.Header]:
    """The PRIMARY image (float64) and header of FITS bytes; ValueError with the reason if there is none."""
    if not isinstance(fits_bytes, (bytes, bytearray, memoryview)) or not fits_bytes:
        raise ValueError("not a FITS image: no bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)      # a damaged file is reported by the error below
            with fits.open(io.BytesIO(bytes(fits_bytes)), memmap=False) as hdus:
                header = hdus[0].header.copy()
                data = hdus[0].data
                image = None if data is None else np.array(data, dtype=float)
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise ValueError(f"not a readable FITS file: {exc}") from None
    if image is None or image.ndim != 2 or 0 in image.shape:
        shape = "no data" if image is None else f"shape {image.shape}"
        raise ValueError(f"FITS PRIMARY is not a 2-D image ({shape})")
    return image, header


def _has_negative_source(image: np.ndarray) -> bool:
    """True when several pixels lie far below the background: only a difference image has negative flux."""
    values = image[np.isfinite(image)]
    if values.size == 0:
        return False
    median = np.median(values)
    sigma = 1.4826 * np.median(np.abs(values - median))
    return sigma > 0 and int(np.count_nonzero(values < median - NEGATIVE_SIGMA * sigma)) >= NEGATIVE_PIXELS


def _signed_levels(image: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] with zero at 0.5: asinh of |value| over a symmetric zscale-derived limit."""
    limit = max(np.abs(ZScaleInterval().get_limits(image[finite]))) if finite.any() else 0.0
    scaled = np.clip(np.where(finite, image, 0.0) / (limit or 1.0), -1.0, 1.0)
    return 0.5 + 0.5 * np.sign(scaled) * AsinhStretch(ASINH_A)(np.abs(scaled), clip=True)


def _unsigned_levels(image: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1]: zscale interval, then asinh stretch."""
    low, high = ZScaleInterval().get_limits(image[finite]) if finite.any() else (0.0, 0.0)
    if high <= low:                                  # a flat image: one grey
        return np.full(image.shape, 0.5)
    scaled = np.clip((np.where(finite, image, low) - low) / (high - low), 0.0, 1.0)
    return AsinhStretch(ASINH_A)(scaled, clip=True)
