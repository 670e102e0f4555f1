"""What the three cutouts of each source show (local WCS, shape, host, fluxes), for afs.alerts.cutouts to
render and serialise."""

from __future__ import annotations

import numpy as np

from afs.alerts import cutouts as cut
from afs.alerts.simulation.camera import PIXEL_SCALE, focal_to_sky, sky_to_focal
from afs.alerts.simulation.epochs import Epochs
from afs.alerts.simulation.kinds import BOGUS, BOGUS_COSMIC_RAY, BOGUS_DIPOLE, BOGUS_STREAK, MOVER, SSO
from afs.alerts.simulation.photometry import (
    COLOR_K, HOST_COLOR, TEMPLATE_COADD, TEMPLATE_ERR, TEMPLATE_SIGMA_PX, mag_to_flux, psf_nea,
)
from afs.alerts.simulation.sky import to_plane

_WRITER = cut.CutoutWriter()          # caches each cutout size's FITS layout across visits


def render_cutouts(rng, o: dict, cur: dict, epoch: Epochs) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Difference, science and template cutouts of the current sources, drawn to match their catalogue values."""
    side = cut.cutout_side(cur["bboxSize"])
    x, y = cur["x"], cur["y"]
    minx, miny = np.rint(x).astype(int) - side // 2, np.rint(y).astype(int) - side // 2
    cd = _local_cd(cur["ra"], cur["dec"], epoch)
    inv = np.linalg.inv(cd * 3600)                          # arcsec (east, north) -> pixels
    kind, sub = o["kind"], o["sub"]
    moving = np.isin(kind, (SSO, MOVER))
    trail_px = cur["trailLength"] / PIXEL_SCALE
    shape = np.select([(kind == BOGUS) & (sub == BOGUS_COSMIC_RAY), (kind == BOGUS) & (sub == BOGUS_DIPOLE),
                       (kind == BOGUS) & (sub == BOGUS_STREAK) | moving & (trail_px > 1.5)],
                      [cut.SPIKE, cut.DIPOLE, cut.TRAIL], cut.POINT)
    bearing = np.radians(np.where(shape == cut.DIPOLE, cur["dipoleAngle"], cur["trailAngle"]))
    direction = np.einsum("kij,kj->ki", inv, np.stack([np.sin(bearing), np.cos(bearing)], axis=1))
    hx, hy = np.einsum("kij,kj->ki", inv, np.nan_to_num(np.column_stack([o["host_dx"], o["host_dy"]]))).T
    host_flux = np.nan_to_num(mag_to_flux(o["host_mag"] + HOST_COLOR * COLOR_K[epoch.band[0]]))
    lobe = np.nan_to_num(cur["dipoleMeanFlux"])
    half_diff = np.nan_to_num(cur["dipoleFluxDiff"]) / 2
    scenes = cut.Scenes(
        side=side, cx=x - minx, cy=y - miny, crval=np.column_stack([cur["ra"], cur["dec"]]), cd=cd,
        cutmin=np.column_stack([minx - 1, miny - 1]), shape=shape,
        diff_flux=cur["psfFlux"], sci_flux=cur["scienceFlux"], tmpl_flux=cur["templateFlux"],
        host_flux=host_flux, host_dx=hx, host_dy=hy,
        host_sigma=np.nan_to_num(o["host_sigma"], nan=1.0) / PIXEL_SCALE,
        length=np.where(shape == cut.DIPOLE, np.nan_to_num(cur["dipoleLength"]) / PIXEL_SCALE, trail_px),
        angle=np.arctan2(direction[:, 1], direction[:, 0]),
        lobe_pos=lobe + half_diff, lobe_neg=lobe - half_diff)
    band = epoch.band[0]
    optics = cut.Optics(sigma=float(epoch.sigma_px[0]), sigma_template=TEMPLATE_SIGMA_PX,
                        sky_var=float(epoch.flux_err[0] ** 2 / epoch.nea[0]),
                        sky_var_template=float(TEMPLATE_ERR[band] ** 2 / psf_nea(TEMPLATE_SIGMA_PX)),
                        gain=float(epoch.gain[0]), gain_template=float(epoch.gain[0] / TEMPLATE_COADD))
    return cut.render(rng, scenes, optics, _WRITER)


def _local_cd(ra, dec, epoch: Epochs) -> np.ndarray:
    """Local linear WCS (k, 2, 2) [deg/px] at each source: the Jacobian of the visit's projection there."""
    fx, fy = sky_to_focal(ra, dec, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
    cols = []
    for dx, dy in ((1.0, 0.0), (0.0, 1.0)):
        r2, d2 = focal_to_sky(fx + dx, fy + dy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
        r1, d1 = focal_to_sky(fx - dx, fy - dy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
        xi2, eta2 = to_plane(r2, d2, ra, dec)
        xi1, eta1 = to_plane(r1, d1, ra, dec)
        cols.append(np.stack([(xi2 - xi1) / 2, (eta2 - eta1) / 2], axis=1))
    return np.stack(cols, axis=2)
