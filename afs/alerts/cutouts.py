"""Alert cutouts as Rubin writes them, rendered and serialised fast enough for 10,000-alert visits.

Rubin's packageAlerts writes each cutout with ``astropy.nddata.CCDData.write``: a PRIMARY image in nJy
(float32) carrying a local linear TAN WCS centred on the source, an UNCERT extension (variance) and a
PSFIMAGE extension. Doing that through CCDData costs ~1 ms per cutout, too slow for 30,000 cutouts a visit,
so ``CutoutWriter`` lets astropy lay out the file once per cutout size and then only fills in each
cutout's position cards and pixel data. The bytes are identical to ``CCDData.write`` for the same inputs
(``ccddata_bytes`` is that reference path; the tests compare the two).

``render`` draws the three images of many alerts at once: a PSF-shaped source whose PSF fit equals the
catalogue flux (psfFlux on the difference image, scienceFlux and templateFlux on the others), an optional
host galaxy, trails, dipoles and cosmic-ray spikes, and noise drawn from the variance plane it writes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy import wcs
from astropy.nddata import CCDData, VarianceUncertainty

MIN_SIDE, MAX_SIDE = 30, 102
_BLOCK = 2880
_CARD = 80
# Header cards that change from cutout to cutout (everything else is fixed by the cutout size).
_FLOAT_CARDS = ("CRPIX1", "CRPIX2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CRVAL1", "CRVAL2", "LATPOLE")
_INT_CARDS = ("CUTMINX", "CUTMINY")
# A rotated CD matrix, so the layout holds every PC card (astropy omits exact zeros; rotations never are).
_LAYOUT_CD = np.array([[-5e-5, 1e-6], [1e-6, 5e-5]])

POINT, TRAIL, SPIKE, DIPOLE = 0, 1, 2, 3


def cutout_side(bbox_size: np.ndarray) -> np.ndarray:
    """Cutout side for a footprint bounding box, clamped as Rubin does."""
    return np.clip(bbox_size, MIN_SIDE, MAX_SIDE)


def local_wcs(crval: tuple[float, float], crpix: tuple[float, float], cd: np.ndarray, side: int) -> wcs.WCS:
    """The local linear TAN WCS Rubin attaches to a cutout (crpix is 1-based, cd in deg/pixel)."""
    w = wcs.WCS(naxis=2)
    w.array_shape = (side, side)
    w.wcs.crpix = list(crpix)
    w.wcs.crval = list(crval)
    w.wcs.cd = np.asarray(cd, dtype=float)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    return w


def ccddata_bytes(image: np.ndarray, variance: np.ndarray, psf: np.ndarray, crval: tuple[float, float],
                  crpix: tuple[float, float], cd: np.ndarray, cutmin: tuple[int, int]) -> bytes:
    """One cutout written the slow, reference way: through CCDData, as Rubin's packageAlerts does."""
    ccd = CCDData(data=image, uncertainty=VarianceUncertainty(variance), psf=psf,
                  wcs=local_wcs(crval, crpix, cd, image.shape[0]),
                  meta={"cutMinX": int(cutmin[0]), "cutMinY": int(cutmin[1])}, unit=u.nJy)
    with io.BytesIO() as stream:
        ccd.write(stream, format="fits")
        return stream.getvalue()


def _fits_float(value: float) -> str:
    """A header real as wcslib (14 significant digits) and then astropy's Card format it."""
    text = str(float(f"{value:.14G}")).replace("e", "E")
    if "." not in text and "E" not in text:
        text += ".0"
    return text


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % _BLOCK)


@dataclass(frozen=True)
class _Layout:
    """Where the per-cutout cards sit in the PRIMARY header of one cutout size."""

    header: bytes
    offsets: dict[str, int]
    uncert_header: bytes


class CutoutWriter:
    """Serialises cutouts exactly as CCDData.write would, building each size's layout once."""

    def __init__(self) -> None:
        self._layouts: dict[int, _Layout] = {}
        self._psf_hdus: dict[bytes, bytes] = {}

    def _layout(self, side: int) -> _Layout:
        if side not in self._layouts:
            blank = np.zeros((side, side), np.float32)
            raw = ccddata_bytes(blank, blank, np.ones((1, 1), np.float32), (10.0, -10.0), (1.5, 1.5),
                                _LAYOUT_CD, (0, 0))
            end = raw.index(b"END" + b" " * 77)
            header = raw[: end + _CARD]
            offsets = {header[i: i + 8].decode().strip(): i for i in range(0, len(header), _CARD)}
            start = len(_pad(header, b" ")) + len(_pad(blank.tobytes(), b"\0"))
            uend = raw.index(b"END" + b" " * 77, start)
            self._layouts[side] = _Layout(header, offsets, _pad(raw[start: uend + _CARD], b" "))
        return self._layouts[side]

    def _psf_hdu(self, psf: np.ndarray) -> bytes:
        key = psf.tobytes()
        if key not in self._psf_hdus:
            if len(self._psf_hdus) >= 64:          # one or two PSFs per visit: keep the cache bounded
                self._psf_hdus.clear()
            raw = ccddata_bytes(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), psf,
                                (10.0, -10.0), (1.0, 1.0), _LAYOUT_CD, (0, 0))
            self._psf_hdus[key] = raw[raw.index(b"XTENSION= 'IMAGE   '", raw.index(b"EXTNAME = 'UNCERT  '")):]
        return self._psf_hdus[key]

    def headers(self, side: int, crval: np.ndarray, crpix: np.ndarray, cd: np.ndarray,
                cutmin: np.ndarray) -> list[bytes]:
        """PRIMARY headers (padded) for k cutouts of one side: crval/crpix (k, 2), cd (k, 2, 2), cutmin (k, 2)."""
        layout = self._layout(side)
        floats = np.column_stack([crpix, cd.reshape(-1, 4), crval, crval[:, 1]]).tolist()
        ints = np.asarray(cutmin, dtype=np.int64).tolist()
        spots = [layout.offsets[name] + 10 for name in _FLOAT_CARDS]
        int_spots = [layout.offsets[name] + 10 for name in _INT_CARDS]
        out = []
        for values, (minx, miny) in zip(floats, ints):
            header = bytearray(layout.header)
            for spot, value in zip(spots, values):
                header[spot: spot + 20] = _fits_float(value).rjust(20).encode()
            header[int_spots[0]: int_spots[0] + 20] = str(minx).rjust(20).encode()
            header[int_spots[1]: int_spots[1] + 20] = str(miny).rjust(20).encode()
            out.append(_pad(bytes(header), b" "))
        return out

    def files(self, headers: list[bytes], images: np.ndarray, variances: np.ndarray, psf: np.ndarray) -> list[bytes]:
        """Complete FITS files: one PRIMARY header per image, images/variances (k, side, side)."""
        layout = self._layout(images.shape[1])
        psf_hdu = self._psf_hdu(psf)
        pad = b"\0" * (-images[0].nbytes % _BLOCK)
        big_images = images.astype(">f4")
        big_variances = variances.astype(">f4")
        return [b"".join((header, image.tobytes(), pad, layout.uncert_header, variance.tobytes(), pad, psf_hdu))
                for header, image, variance in zip(headers, big_images, big_variances)]


def psf_image(sigma: float) -> np.ndarray:
    """The PSF model (sum 1) on a centred odd grid, as written to PSFIMAGE."""
    half = int(np.clip(np.ceil(7.0 * sigma), 10, 25))
    axis = np.arange(-half, half + 1, dtype=float)
    image = _psf(axis[None, :], axis[None, :], np.zeros(1), np.zeros(1), sigma)[0]
    return (image / image.sum()).astype(np.float32)


def _gauss(axis: np.ndarray, centre: np.ndarray, sigma: float | np.ndarray, scale: float | np.ndarray = 1.0):
    """scale * exp(-(axis - centre)^2 / 2 sigma^2) for each centre: (k, len(axis)), float32."""
    sigma = np.asarray(sigma, dtype=float).reshape(-1, 1)
    scale = np.asarray(scale, dtype=float).reshape(-1, 1)
    return (scale * np.exp(-0.5 * ((axis - centre[:, None]) / sigma) ** 2)).astype(np.float32)


def _psf(xs: np.ndarray, ys: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: float) -> np.ndarray:
    """Double-Gaussian PSF (90% core, 10% wing of twice the width), normalised to unit flux, at (cx, cy)."""
    core = np.einsum("ki,kj->kij", _gauss(ys, cy, sigma, 0.9 / (2 * np.pi * sigma**2)), _gauss(xs, cx, sigma))
    core += np.einsum("ki,kj->kij", _gauss(ys, cy, 2 * sigma, 0.1 / (8 * np.pi * sigma**2)), _gauss(xs, cx, 2 * sigma))
    return core


@dataclass(frozen=True)
class Optics:
    """One visit's imaging constants (pixels and nJy)."""

    sigma: float            # science PSF core sigma [px]
    sigma_template: float   # template PSF core sigma [px]
    sky_var: float          # science sky variance per pixel [nJy^2]
    sky_var_template: float
    gain: float             # nJy per photo-electron: Poisson variance = gain * signal
    gain_template: float


@dataclass(frozen=True)
class Scenes:
    """What each of k cutouts shows; positions in 0-based cutout pixels."""

    side: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    crval: np.ndarray       # (k, 2) source ra, dec [deg]
    cd: np.ndarray          # (k, 2, 2) local linear WCS [deg/px]
    cutmin: np.ndarray      # (k, 2) CCDData cutMinX/Y metadata
    shape: np.ndarray       # POINT, TRAIL, SPIKE or DIPOLE
    diff_flux: np.ndarray   # psfFlux [nJy]
    sci_flux: np.ndarray    # scienceFlux [nJy]
    tmpl_flux: np.ndarray   # templateFlux [nJy]
    host_flux: np.ndarray   # host galaxy total flux [nJy] (0: none)
    host_dx: np.ndarray     # host centre offset [px]
    host_dy: np.ndarray
    host_sigma: np.ndarray  # host Gaussian sigma [px]
    length: np.ndarray      # trail length or dipole lobe separation [px]
    angle: np.ndarray       # trail/dipole direction, radians from +x
    lobe_pos: np.ndarray    # dipole lobe fluxes [nJy]
    lobe_neg: np.ndarray


def render(rng: np.random.Generator, scenes: Scenes, optics: Optics, writer: CutoutWriter, *,
           chunk: int = 1024) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Difference, science and template cutouts (FITS bytes) for every scene, in scene order."""
    k = len(scenes.side)
    out: tuple[list, list, list] = ([None] * k, [None] * k, [None] * k)
    psf_sci, psf_tmpl = psf_image(optics.sigma), psf_image(optics.sigma_template)
    for side in np.unique(scenes.side):
        members = np.flatnonzero(scenes.side == side)
        for start in range(0, len(members), chunk):
            idx = members[start: start + chunk]
            headers = writer.headers(int(side), scenes.crval[idx], np.column_stack(
                [scenes.cx[idx] + 1.0, scenes.cy[idx] + 1.0]), scenes.cd[idx], scenes.cutmin[idx])
            diff, sci, tmpl = _draw(rng, scenes, idx, int(side), optics)
            for planes, slot, psf in zip((diff, sci, tmpl), out, (psf_sci, psf_sci, psf_tmpl)):
                for i, data in zip(idx, writer.files(headers, planes[0], planes[1], psf)):
                    slot[i] = data
    return out


def _shape(scenes: Scenes, idx: np.ndarray, axis: np.ndarray, psf: np.ndarray, sigma: float) -> np.ndarray:
    """Unit-flux image of the difference-image signal: the PSF, a trail or a cosmic-ray spike."""
    kinds = scenes.shape[idx]
    if not np.isin(kinds, (TRAIL, SPIKE)).any():
        return psf
    shape = psf.copy()
    trails = np.flatnonzero(kinds == TRAIL)
    if len(trails):
        t = idx[trails]
        steps = np.linspace(-0.5, 0.5, 9)
        acc = 0.0
        for s in steps:
            acc = acc + _psf(axis, axis, scenes.cx[t] + s * scenes.length[t] * np.cos(scenes.angle[t]),
                             scenes.cy[t] + s * scenes.length[t] * np.sin(scenes.angle[t]), sigma)
        shape[trails] = acc / len(steps)
    spikes = np.flatnonzero(kinds == SPIKE)
    if len(spikes):
        shape[spikes] = 0.0
        px = np.rint(scenes.cx[idx[spikes]]).astype(int)
        py = np.rint(scenes.cy[idx[spikes]]).astype(int)
        shape[spikes, py, px] = 0.7
        shape[spikes, py, np.minimum(px + 1, len(axis) - 1)] = 0.2
        shape[spikes, np.minimum(py + 1, len(axis) - 1), px] = 0.1
    return shape


def _draw(rng: np.random.Generator, scenes: Scenes, idx: np.ndarray, side: int, optics: Optics):
    """((diff, var), (sci, var), (tmpl, var)) float32 arrays (k, side, side) for the scenes idx."""
    axis = np.arange(side, dtype=float)[None, :]
    cx, cy = scenes.cx[idx], scenes.cy[idx]
    psf_s = _psf(axis, axis, cx, cy, optics.sigma)
    psf_t = _psf(axis, axis, cx, cy, optics.sigma_template)
    shape = _shape(scenes, idx, axis, psf_s, optics.sigma)
    dipole = scenes.shape[idx] == DIPOLE
    sci_unit = np.where(dipole[:, None, None], psf_s, shape) if dipole.any() else shape
    hosts = [None, None]                       # host galaxy in the science and template images
    has_host = scenes.host_flux[idx] > 0
    if has_host.any():
        h = idx[has_host]
        for i, sigma in enumerate((optics.sigma, optics.sigma_template)):
            width = np.sqrt(scenes.host_sigma[h] ** 2 + sigma**2)
            image = np.zeros_like(psf_s)
            image[has_host] = np.einsum("ki,kj->kij",
                                        _gauss(axis, scenes.cy[h] + scenes.host_dy[h], width,
                                               scenes.host_flux[h] / (2 * np.pi * width**2)),
                                        _gauss(axis, scenes.cx[h] + scenes.host_dx[h], width))
            hosts[i] = image

    planes = []
    for unit, host, psf, flux in ((shape, None, psf_s, scenes.diff_flux[idx]),
                                  (sci_unit, hosts[0], psf_s, scenes.sci_flux[idx]),
                                  (psf_t, hosts[1], psf_t, scenes.tmpl_flux[idx])):
        # The source is scaled so the image's PSF fit reproduces the catalogue flux (noise is fitted out below).
        power = np.einsum("kij,kij->k", psf, psf)
        norm = np.einsum("kij,kij->k", unit, psf) / power
        amplitude = flux - (np.einsum("kij,kij->k", host, psf) / power if host is not None else 0.0)
        signal = unit * (amplitude / norm).astype(np.float32)[:, None, None]
        if host is not None:
            signal += host
        planes.append([signal, unit, psf, power, norm])
    if dipole.any():
        d = idx[dipole]
        half = 0.5 * scenes.length[d]
        dx, dy = half * np.cos(scenes.angle[d]), half * np.sin(scenes.angle[d])
        planes[0][0][dipole] = (_psf(axis, axis, cx[dipole] + dx, cy[dipole] + dy, optics.sigma)
                                * scenes.lobe_pos[d].astype(np.float32)[:, None, None]
                                - _psf(axis, axis, cx[dipole] - dx, cy[dipole] - dy, optics.sigma)
                                * scenes.lobe_neg[d].astype(np.float32)[:, None, None])
    var_s = optics.sky_var + optics.gain * np.maximum(planes[1][0], 0.0)
    var_t = optics.sky_var_template + optics.gain_template * np.maximum(planes[2][0], 0.0)
    out = []
    for (signal, unit, psf, power, norm), var, fixed in zip(planes, (var_s + var_t, var_s, var_t),
                                                            (dipole, False, False)):
        image = rng.standard_normal(signal.shape, dtype=np.float32)
        image *= np.sqrt(var)
        shift = np.where(fixed, 0.0, -np.einsum("kij,kij->k", image, psf) / power / norm).astype(np.float32)
        image += signal
        image += unit * shift[:, None, None]
        out.append((image, var))
    return out
