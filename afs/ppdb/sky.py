"""HEALPix pixels for the mirror's spatial index and the exact angular distance it is checked with.

Every spatial row carries its nested HEALPix index at HEALPIX_ORDER. A cone becomes a superset of candidate
pixels (a list read through the ART index, or nested-id ranges), and the exact great-circle distance
decides. The distance is the haversine form, well conditioned for small angles, at the poles and across
RA 0/360. A batch of small cones (prefetch) uses each centre's pixel and its 8 neighbours at an order
whose pixels are 4x the radius: sampling discs at the poles, the base-pixel corners and elsewhere finds
that block always covers cones up to 0.5x a pixel (and misses some at 0.7x).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy_healpix import core as healpix
from astropy_healpix import nside_to_pixel_resolution

from afs.ppdb.schema import HEALPIX_ORDER

MAX_IN_PIXELS = 1024  # a cone with at most this many index-order pixels (~200") is read through the ART index
NEIGHBOUR_MARGIN = 0.25  # block-of-9 joins use an order whose pixel is >= 4x the radius (safe up to 0.5x)


def pixel_arcsec(order: int) -> float:
    return float(nside_to_pixel_resolution(2**order).to_value(u.arcsec))


def pixels(ra: np.ndarray, dec: np.ndarray, order: int = HEALPIX_ORDER) -> np.ndarray:
    """Nested HEALPix index of each position (degrees), int64."""
    index = healpix.lonlat_to_healpix(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg,
                                      2**order, order="nested")
    return np.asarray(index, dtype=np.int64)


def cone_pixels(ra: float, dec: float, radius_arcsec: float, order: int) -> np.ndarray:
    """Sorted nested pixels at ``order`` that the cone touches, even partly.

    astropy-healpix's cone search misses a partly covered pixel now and then when the cone is smaller than
    a pixel (a few percent of small cones; more near the poles), so it is asked for one pixel more radius:
    checked against the pixels of points sampled over the disc (tests/ppdb).
    """
    radius = radius_arcsec + pixel_arcsec(order)
    found = healpix.healpix_cone_search(ra * u.deg, dec * u.deg, radius * u.arcsec, 2**order, order="nested")
    return np.sort(np.asarray(found, dtype=np.int64))


def cone_plan(ra: float, dec: float, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How to read a cone: (index-order pixels for an ART IN-list, or empty; range starts; range ends).

    A small cone is a short list of index-order pixels; a larger one becomes inclusive [lo, hi] ranges of
    index-order ids from a coarser order with pixels about half the radius across (consecutive ids merged).
    """
    if radius_arcsec <= 16 * pixel_arcsec(HEALPIX_ORDER):
        found = cone_pixels(ra, dec, radius_arcsec, HEALPIX_ORDER)
        if len(found) <= MAX_IN_PIXELS:
            return found, found[:0], found[:0]
    order = HEALPIX_ORDER
    while order > 0 and pixel_arcsec(order) < radius_arcsec / 2:
        order -= 1
    found = cone_pixels(ra, dec, radius_arcsec, order)
    breaks = np.flatnonzero(np.diff(found) != 1)
    starts = np.r_[found[:1], found[breaks + 1]]
    ends = np.r_[found[breaks], found[-1:]]
    shift = 2 * (HEALPIX_ORDER - order)
    return found[:0], starts << shift, ((ends + 1) << shift) - 1


def neighbour_order(radius_arcsec: float) -> int:
    """The finest order at which a pixel and its 8 neighbours cover any cone of this radius inside it."""
    order = HEALPIX_ORDER
    while order > 0 and radius_arcsec > NEIGHBOUR_MARGIN * pixel_arcsec(order):
        order -= 1
    return order


def blocks(ra: np.ndarray, dec: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, pixel) pairs: each position's pixel at ``order`` and its neighbours (vectorised)."""
    centre = pixels(ra, dec, order)
    with np.errstate(invalid="ignore"):
        around = healpix.neighbours(centre, 2**order, order="nested")  # (8, n); -1 where a vertex has 7
    block = np.vstack([centre[None, :], around])
    rows = np.broadcast_to(np.arange(len(centre)), block.shape)
    keep = block >= 0
    return rows[keep].astype(np.int64), block[keep].astype(np.int64)


def separation_sql(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    """SQL for the great-circle separation in arcsec between two positions given in degrees (haversine)."""
    return (f"(7200.0 * degrees(asin(least(1.0, sqrt(pow(sin(radians({dec2} - {dec1}) / 2), 2) + "
            f"cos(radians({dec1})) * cos(radians({dec2})) * pow(sin(radians({ra2} - {ra1}) / 2), 2))))))")


def separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """The same haversine separation in numpy (arcsec), for callers and tests."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, float)) for x in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.minimum(1.0, np.sqrt(h)))) * 3600
