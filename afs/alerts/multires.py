"""Multi-resolution cutouts (``?format=multires``): a wider field than the alert's cutout in about as many pixels.

Why: broker teams asked for context around a source (neighbours, host, artefacts) without paying for a big
cutout; resolution matters at the source, less further out. So the field is a pyramid, full resolution at
the centre and coarser outside, packaged as plain FITS image HDUs that any viewer opens and aligns by WCS.

Geometry (``LEVELS`` = L = 4, n = ``level_side(cutout side)``):

- The alert's cutout side s (its footprint's bboxSize clamped to 30..102, as Rubin does) sets n, the multiple
  of 4 nearest s / 2. Every level is n x n pixels, so the file holds L n^2 ~ s^2 pixels: about the alert's own
  cutout (30 px -> n = 16, 1024 pixels for 900; 102 px -> n = 52, 10816 for 10404).
- Level k (0..L-1) bins 2^k x 2^k native pixels and covers n 2^k native pixels, centred on the pixel corner
  nearest the alert's position (which is within half a native pixel of the centre of every level). The field
  is n 2^(L-1) = 8n native pixels wide (128 px = 25.6" for a 30 px cutout, four times its width).
- Levels overlap: the centre quarter of level k+1 is level k binned 2x2 (n is a multiple of 4, so pixel edges
  line up). It is kept rather than set to NaN: NaN would save no bytes (every HDU is a full float32
  rectangle either way), and this way each HDU is a complete image of its own field in any viewer.
- Binning conserves flux: a coarse pixel is the sum of the native pixels it covers, in nJy like Rubin's images
  (nJy in that pixel), so summing pixels in an aperture gives the same flux on every level; a coarse pixel's
  noise and values are 4^k times a native pixel's scale.

Package: PRIMARY is level 0 (full resolution), then one IMAGE HDU per coarser level (EXTNAME LEVEL1..), each
with its own linear TAN WCS: the native CD matrix times 2^k and CRPIX moved to the binned grid, so world
coordinates of a coarse pixel centre are the centre of the native pixels it bins. Header keywords:
MRLEVEL (k), MRBIN (2^k), MRLEVELS (L), MRNPIX (n), MRFIELD (field width, native px), MRORIGX/MRORIGY (the
level's first native pixel within the field), MRBINOP ('SUM'), CUTKIND, DIASRCID and BUNIT nJy.

Where the wider field comes from is a FieldSource, chosen by ``Settings.multires_field_source``: the embedded
default renders it from the alert (afs.alerts.simulation.wide_field). A source backed by Rubin's image cutout
service (IVOA SODA) is not written yet; it would implement the same protocol.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from astropy import wcs
from astropy.io import fits

from afs.alerts.cutouts import cutout_side, local_wcs
from afs.config import Settings

KINDS = ("difference", "science", "template")
LEVELS = 4


class FieldSource(Protocol):
    """Gives the native-resolution sky around an alert, larger than its cutout."""

    def parent(self, record: Mapping[str, Any], kind: str, side: int) -> tuple[np.ndarray, wcs.WCS]:
        """An image [nJy per pixel] holding at least side x side pixels around the alert, with a linear TAN WCS."""
        ...


def field_source(settings: Settings) -> FieldSource:
    """The configured FieldSource."""
    if settings.multires_field_source == "simulated":
        from afs.alerts.simulation.wide_field import SimulatedField       # the simulator only when chosen

        return SimulatedField()
    raise ValueError(f"unknown multires field source {settings.multires_field_source!r}")


def level_side(side: int) -> int:
    """n: pixels per level side for a cutout of this side, the multiple of 4 nearest side / 2."""
    return 4 * max(1, round(side / 8))


def build(settings: Settings, record: Mapping[str, Any], kind: str) -> bytes:
    """The multi-resolution cutout of one alert image as FITS bytes (geometry in the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    source = record["diaSource"]
    n = level_side(int(cutout_side(np.asarray(source["bboxSize"]))))
    field = n * 2 ** (LEVELS - 1)
    data, parent_wcs = field_source(settings).parent(record, kind, field)
    hdus = fits.HDUList()
    for level, (image, level_wcs, origin) in enumerate(pyramid(data, parent_wcs, source["ra"], source["dec"], n)):
        header = level_wcs.to_header()
        header["BUNIT"] = ("nJy", "flux in the pixel: sum of native pixels")
        header["MRLEVEL"] = (level, "multires level (0 = full resolution)")
        header["MRBIN"] = (2**level, "native pixels binned per axis")
        header["MRLEVELS"] = (LEVELS, "levels in this file")
        header["MRNPIX"] = (n, "pixels per axis of every level")
        header["MRFIELD"] = (field, "field width in native pixels (coarsest level)")
        header["MRORIGX"] = (origin[0], "first native x of this level within the field")
        header["MRORIGY"] = (origin[1], "first native y of this level within the field")
        header["MRBINOP"] = ("SUM", "binning conserves flux")
        header["CUTKIND"] = (kind, "alert image: difference, science or template")
        header["DIASRCID"] = (int(record["diaSourceId"]), "alert diaSourceId")
        header["EXTNAME"] = f"LEVEL{level}"
        hdus.append(fits.PrimaryHDU(image, header) if level == 0 else fits.ImageHDU(image, header))
    with io.BytesIO() as out:
        hdus.writeto(out)
        return out.getvalue()


def pyramid(data: np.ndarray, parent_wcs: wcs.WCS, ra: float, dec: float, n: int,
            levels: int = LEVELS) -> list[tuple[np.ndarray, wcs.WCS, np.ndarray]]:
    """(image, WCS, first native pixel (x, y) within the field) of each level, finest first.

    Raises ValueError if the parent image does not reach far enough around (ra, dec)."""
    if tuple(parent_wcs.wcs.ctype) != ("RA---TAN", "DEC--TAN") or parent_wcs.has_distortion:
        raise ValueError(f"the parent image needs a linear TAN WCS, got {tuple(parent_wcs.wcs.ctype)}")
    position = np.array(parent_wcs.world_to_pixel_values(ra, dec), dtype=float)
    corner = np.floor(position + 1.0).astype(int)         # 0-based index of the pixel right of/above the corner
    field = n * 2 ** (levels - 1)
    out = []
    for level in range(levels):
        binning = 2**level
        start = corner - n * binning // 2
        stop = start + n * binning
        if (start < 0).any() or stop[0] > data.shape[1] or stop[1] > data.shape[0]:
            raise ValueError(f"the parent image ({data.shape[1]} x {data.shape[0]}) does not cover level {level}")
        block = np.asarray(data[start[1]: stop[1], start[0]: stop[0]], dtype=np.float64)
        image = block.reshape(n, binning, n, binning).sum(axis=(1, 3)).astype(np.float32)
        out.append((image, binned_wcs(parent_wcs, start, binning, n), start - (corner - field // 2)))
    return out


def binned_wcs(native: wcs.WCS, start: np.ndarray, binning: int, side: int) -> wcs.WCS:
    """WCS of side x side pixels binning `binning` native pixels per axis from native pixel start (x, y).

    A coarse pixel j (0-based) spans native pixels start + j b .. start + (j + 1) b - 1, whose centre
    start + j b + (b - 1) / 2 is where its world coordinates are taken: in 1-based FITS pixels
    CRPIX' = (CRPIX - start - 0.5) / b + 0.5, and CD' = b CD.
    """
    crpix = (native.wcs.crpix - np.asarray(start, dtype=float) - 0.5) / binning + 0.5
    return local_wcs(tuple(native.wcs.crval), tuple(crpix), native.pixel_scale_matrix * binning, side)
