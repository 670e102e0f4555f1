"""LSSTCam: sky <-> focal-plane pixels for a pointing and rotation, and the 189 detectors (21 rafts of 3x3,
with gaps) that tile the focal plane."""

from __future__ import annotations

import numpy as np

from afs.alerts.simulation.sky import from_plane, to_plane

PIXEL_SCALE = 0.2                           # arcsec per pixel
_RAFT, _CCD = 12700.0, 4225.0               # raft and detector pitches [px]
DETECTOR_NX, DETECTOR_NY = 4072, 4000       # detector size [px]
_RAFTS = np.full((5, 5), -1)                # raft number at each (row, column) of the 5x5 grid; corners are empty
_RAFTS[[r for r in range(5) for c in range(5) if (r, c) not in {(0, 0), (0, 4), (4, 0), (4, 4)}],
       [c for r in range(5) for c in range(5) if (r, c) not in {(0, 0), (0, 4), (4, 0), (4, 4)}]] = np.arange(21)
N_DETECTORS = 189


def sky_to_focal(ra, dec, ra0, dec0, rot):
    """(xi, eta) -> focal-plane pixels: a rotation by rot with east to the left (the matrix is its own inverse)."""
    xi, eta = to_plane(ra, dec, ra0, dec0)
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    xi, eta = xi * 3600 / PIXEL_SCALE, eta * 3600 / PIXEL_SCALE
    return -c * xi + s * eta, s * xi + c * eta


def focal_to_sky(fx, fy, ra0, dec0, rot):
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    xi, eta = (-c * fx + s * fy) * PIXEL_SCALE / 3600, (s * fx + c * fy) * PIXEL_SCALE / 3600
    return from_plane(xi, eta, ra0, dec0)


def focal_to_detector(fx, fy):
    """(detector or -1, x, y) of focal-plane pixel coordinates: 21 rafts of 3x3 detectors, with gaps."""
    col, row = np.floor(fx / _RAFT + 2.5).astype(int), np.floor(fy / _RAFT + 2.5).astype(int)
    inside = (col >= 0) & (col < 5) & (row >= 0) & (row < 5)
    raft = np.where(inside, _RAFTS[np.clip(row, 0, 4), np.clip(col, 0, 4)], -1)
    lx, ly = fx - (col - 2) * _RAFT, fy - (row - 2) * _RAFT
    scol, srow = np.floor(lx / _CCD + 1.5).astype(int), np.floor(ly / _CCD + 1.5).astype(int)
    x, y = lx - (scol - 1) * _CCD + DETECTOR_NX / 2, ly - (srow - 1) * _CCD + DETECTOR_NY / 2
    ok = ((raft >= 0) & (scol >= 0) & (scol < 3) & (srow >= 0) & (srow < 3)
          & (x >= 0) & (x < DETECTOR_NX) & (y >= 0) & (y < DETECTOR_NY))
    return np.where(ok, raft * 9 + srow * 3 + scol, -1), x, y


def detector_to_focal(det, x, y):
    raft, sensor = np.divmod(det, 9)
    srow, scol = np.divmod(sensor, 3)
    row, col = np.nonzero(_RAFTS >= 0)
    return ((col[raft] - 2) * _RAFT + (scol - 1) * _CCD + x - DETECTOR_NX / 2,
            (row[raft] - 2) * _RAFT + (srow - 1) * _CCD + y - DETECTOR_NY / 2)
