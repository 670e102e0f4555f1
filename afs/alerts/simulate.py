"""Realistic simulated Rubin alerts (schema lsst.v11_1.alert), one visit at a time.

Why: the service needs alert streams with Rubin's sizes, histories and populations to test and benchmark
filters, the stream worker and the PPDB mirror; lsst.alert.packet's own simulator fills almost nothing on v11.

The model, in short (every draw comes from ``np.random.default_rng``, so a seed gives byte-identical alerts):

- Survey: a visit points LSSTCam (189 4k detectors, 0.2"/px, ~3.5 deg across) at a field above Cerro Pachon
  at the visit time, in one band, with seeing and a 5-sigma depth drawn per visit. Sources sit on real
  detector pixels; ra/dec, x/y and detector agree through a TAN projection, and each cutout carries the
  local linear WCS at its source.
- Time: visit numbers are day_obs * 100000 + seq as for LSSTCam; a night starts at 23:30 UTC on day_obs and
  each visit takes 37 s (numbers that are no date count nights from DEFAULT_FIRST_VISIT's).
- History: each field has a 12-month past schedule (pairs of visits ~33 min apart on nights days to weeks
  apart, denser in rolling-cadence weeks, season gaps, dithers). Detections (>= 5 sigma) become
  prvDiaSources; every covered visit since the object was created becomes a prvDiaForcedSource; the
  diaObject summarises exactly those sources. Most alerts carry ~10 + 15 of them, variables up to ~100.
- Populations, mixed by where the field is: periodic variable stars and microlensing (Paczynski, achromatic)
  towards the Galactic plane and bulge; AGN (damped random walk), supernovae (Bazin rise and fall, offset from a
  host) and fast risers away from it; asteroids towards the ecliptic (known ones with ssSource and mpc_orbits
  from a self-consistent orbit, unknown ones as new diaObjects); bogus detections (dipoles, cosmic rays,
  detector edges, satellite streaks, bright-star residuals, noise) with low reliability and their pixel flags.
- ``simulate_visits`` observes fields in blobs of ``BLOB`` visits and then revisits each field once in
  another band (a scheduler pair), so real objects and known asteroids come back with the first visit's
  diaSource in their history.

Ids: diaSourceId = visit << 22 | slot (slot unique within a field), so ids are unique across visits;
diaObjectId is the id of the object's first diaSource; diaForcedSourceId sets bit 21 of the slot;
ssObjectId is the asteroid's packed MPC designation read as 8 ASCII bytes.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from lsst.alert.packet.schema import get_schema_root

from afs.alerts import cutouts as cut

__all__ = ["simulate_visit", "simulate_visits", "KIND_NAMES", "BLOB", "DEFAULT_FIRST_VISIT"]

BANDS = "ugrizy"
ZP_NJY = 31.4                 # AB magnitude of 1 nJy
PIXEL_SCALE = 0.2             # arcsec per pixel
EXPOSURE = 30.0               # s
BLOB = 5                      # fields per scheduler blob in simulate_visits; each is visited twice
DEFAULT_FIRST_VISIT = 2026_04_01_00001   # day_obs * 100000 + seq, as LSSTCam numbers visits
RELIABILITY_VERSION = "rbResnet50-v1"

VAR, AGN, SN, FAST, ULENS, SSO, MOVER, BOGUS = range(8)
KIND_NAMES = ("variable_star", "agn", "supernova", "fast_transient", "microlensing", "solar_system",
              "unknown_mover", "bogus")
_HISTORY_KINDS = (VAR, AGN, SN, FAST, ULENS)
_DIPOLE, _CR, _EDGE, _STREAK, _RESIDUAL, _NOISE = range(6)          # bogus subtypes
_SINE, _SAWTOOTH, _ECLIPSE = range(3)                                 # variable-star light-curve shapes

_M5 = np.array([23.7, 24.85, 24.45, 24.05, 23.45, 22.55])    # median single-visit 5-sigma depth
_SKY_MAG = np.array([22.9, 22.2, 21.2, 20.5, 19.6, 18.6])    # dark sky, mag/arcsec^2
_BAND_P = np.array([0.06, 0.09, 0.22, 0.22, 0.20, 0.21])     # survey band mix
_COLOR_K = np.array([2.2, 1.0, 0.0, -0.35, -0.55, -0.65])    # band offset per unit g-r colour
_PULSE_K = np.array([1.35, 1.2, 1.0, 0.85, 0.75, 0.7])        # pulsation amplitude per band
_AGN_K = np.array([1.6, 1.35, 1.0, 0.85, 0.75, 0.7])          # AGN variability amplitude per band
_FALL_K = np.array([0.6, 0.8, 1.0, 1.2, 1.35, 1.45])          # transient decline time per band
_SSO_COLOR = np.array([1.3, 0.35, -0.2, -0.35, -0.35, -0.3])  # asteroid band minus V
_HOST_COLOR = 0.7             # g-r of host galaxies
_TEMPLATE_FWHM = 0.7          # arcsec
_TEMPLATE_DEPTH = 1.5         # template (coadd) depth beyond a single visit, mag
_TEMPLATE_COADD = 16          # visits in a template: its Poisson variance per unit flux is 1/16 a visit's
_SITE_LON, _SITE_LAT = -70.7494, -30.2444
_OBLIQUITY = np.radians(23.4392911)
_GM_SUN = 2.9591220828559115e-4   # AU^3 / day^2
_AU_PER_DAY_KMS = 1731.456837
_MJD_EPOCH = datetime(1858, 11, 17)
_ID_BITS = 22                # diaSourceId = visit << 22 | slot; slots stay below 2**21 (2 visits of < 2**20)
_FORCED_BIT = 1 << 21        # set in diaForcedSourceIds so they never repeat a diaSourceId


# ------------------------------------------------------------------------------------------- schema columns
@dataclass(frozen=True)
class _Column:
    name: str
    type: str        # Avro base type; timestamp-micros as "timestamp"
    nullable: bool


def _columns(record: str) -> tuple[_Column, ...]:
    """Field names, types and nullability of one v11.1 record, in schema order."""
    path = Path(get_schema_root()) / "11" / "1" / f"lsst.v11_1.{record}.avsc"
    out = []
    for field in json.loads(path.read_text())["fields"]:
        kind = field["type"]
        nullable = isinstance(kind, list) and "null" in kind
        if isinstance(kind, list):
            kind = next(t for t in kind if t != "null")
        if isinstance(kind, dict):
            kind = "timestamp" if kind.get("logicalType") == "timestamp-micros" else kind["type"]
        out.append(_Column(field["name"], kind, nullable))
    return tuple(out)


DIA_SOURCE = _columns("diaSource")
DIA_FORCED_SOURCE = _columns("diaForcedSource")
DIA_OBJECT = _columns("diaObject")
SS_SOURCE = _columns("ssSource")
MPC_ORBITS = _columns("mpc_orbits")


def _py(value: Any, column: _Column) -> tuple[bool, Any]:
    """(True, value) for a column with one value in every row, else (False, list of Python values).

    Float fields are rounded to float32 (what Avro stores); NaN and negative ids/counts become None.
    """
    if not isinstance(value, np.ndarray):
        return not isinstance(value, list), value
    if column.type in ("float", "double"):
        array = value.astype(np.float32 if column.type == "float" else np.float64)
        nan = np.isnan(array)
        if nan.all():
            return True, None
        if (array == array[0]).all():
            return True, array[0].item()
        out = array.tolist()
        return False, [None if v != v else v for v in out] if nan.any() else out
    if len(value) and (value == value[0]).all():
        item = value[0].item()
        return True, None if column.nullable and column.type in ("int", "long") and item < 0 else item
    out = value.tolist()
    if column.nullable and column.type in ("int", "long") and (value < 0).any():
        out = [None if v < 0 else v for v in out]
    return False, out


def _records(table: dict[str, Any], columns: tuple[_Column, ...], n: int) -> list[dict]:
    """One dict per row with every schema field; a missing column is a bug (KeyError), not a silent null.

    Rows start as copies of a template holding the columns that are constant; only the others are
    assigned row by row (about twice as fast as building each dict from scratch).
    """
    template, varying = {}, []
    for column in columns:
        constant, value = _py(table[column.name], column)
        template[column.name] = value if constant else None
        if not constant:
            varying.append((column.name, value))
    copy = template.copy
    rows = [copy() for _ in range(n)]
    for name, values in varying:
        for row, value in zip(rows, values):
            row[name] = value
    return rows


def _take(table: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in table.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation; a key missing from a part is filled with NaN, -1, False or ''."""
    parts = [p for p in parts if p]
    keys = list(dict.fromkeys(k for p in parts for k in p))
    sizes = [len(next(iter(p.values()))) for p in parts]
    out = {}
    for key in keys:
        like = next(p[key] for p in parts if key in p)
        fill = {"f": np.nan, "i": -1, "b": False, "U": ""}[like.dtype.kind]
        out[key] = np.concatenate([p[key] if key in p else np.full((size,) + like.shape[1:], fill, like.dtype)
                                   for p, size in zip(parts, sizes)])
    return out


# ------------------------------------------------------------------------------------------- sky geometry
def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2] / np.linalg.norm(v, axis=-1), -1, 1)))
    return ra, dec


_TO_GALACTIC = np.array([[-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
                         [0.4941094278755837, -0.4448296299600112, 0.7469822444972189],
                         [-0.8676661490190047, -0.1980763734312015, 0.4559837761750669]])
_TO_ECLIPTIC = np.array([[1, 0, 0], [0, np.cos(_OBLIQUITY), np.sin(_OBLIQUITY)],
                         [0, -np.sin(_OBLIQUITY), np.cos(_OBLIQUITY)]])
_ECLIPTIC_POLE = _TO_ECLIPTIC[2]          # ecliptic north pole in equatorial coordinates


def _galactic(ra, dec):
    return _radec(_unit(ra, dec) @ _TO_GALACTIC.T)


def _ecliptic(ra, dec):
    return _radec(_unit(ra, dec) @ _TO_ECLIPTIC.T)


def _sun(mjd: float) -> tuple[np.ndarray, float]:
    """Geocentric unit vector (equatorial) and distance [AU] of the Sun (Astronomical Almanac, ~0.01 deg)."""
    n = mjd - 51544.5
    g = np.radians(357.528 + 0.9856003 * n)
    lam = np.radians(280.460 + 0.9856474 * n + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    ecl = np.array([np.cos(lam), np.sin(lam), 0.0])
    return _TO_ECLIPTIC.T @ ecl, 1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2 * g)


def _lst(mjd: float) -> float:
    return (280.46061837 + 360.98564736629 * (mjd - 51544.5) + _SITE_LON) % 360.0


def _to_plane(ra, dec, ra0, dec0):
    """Gnomonic standard coordinates (xi east, eta north) in degrees about (ra0, dec0)."""
    a, d, a0, d0 = map(np.radians, (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def _from_plane(xi, eta, ra0, dec0):
    x, y, a0, d0 = np.radians(xi), np.radians(eta), np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    safe = np.where(rho == 0, 1.0, rho)
    dec = np.arcsin(np.cos(c) * np.sin(d0) + y * np.sin(c) * np.cos(d0) / safe)
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _sky_to_focal(ra, dec, ra0, dec0, rot):
    """(xi, eta) -> focal-plane pixels: a rotation by rot with east to the left (the matrix is its own inverse)."""
    xi, eta = _to_plane(ra, dec, ra0, dec0)
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    xi, eta = xi * 3600 / PIXEL_SCALE, eta * 3600 / PIXEL_SCALE
    return -c * xi + s * eta, s * xi + c * eta


def _focal_to_sky(fx, fy, ra0, dec0, rot):
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    xi, eta = (-c * fx + s * fy) * PIXEL_SCALE / 3600, (s * fx + c * fy) * PIXEL_SCALE / 3600
    return _from_plane(xi, eta, ra0, dec0)


# ------------------------------------------------------------------------------------------- LSSTCam focal plane
_RAFT, _CCD, _NX, _NY = 12700.0, 4225.0, 4072, 4000        # pitches and detector size [px]
_RAFTS = np.full((5, 5), -1)
_RAFTS[[r for r in range(5) for c in range(5) if (r, c) not in {(0, 0), (0, 4), (4, 0), (4, 4)}],
       [c for r in range(5) for c in range(5) if (r, c) not in {(0, 0), (0, 4), (4, 0), (4, 4)}]] = np.arange(21)
N_DETECTORS = 189


def _detector(fx, fy):
    """(detector or -1, x, y) of focal-plane pixel coordinates: 21 rafts of 3x3 detectors, with gaps."""
    col, row = np.floor(fx / _RAFT + 2.5).astype(int), np.floor(fy / _RAFT + 2.5).astype(int)
    inside = (col >= 0) & (col < 5) & (row >= 0) & (row < 5)
    raft = np.where(inside, _RAFTS[np.clip(row, 0, 4), np.clip(col, 0, 4)], -1)
    lx, ly = fx - (col - 2) * _RAFT, fy - (row - 2) * _RAFT
    scol, srow = np.floor(lx / _CCD + 1.5).astype(int), np.floor(ly / _CCD + 1.5).astype(int)
    x, y = lx - (scol - 1) * _CCD + _NX / 2, ly - (srow - 1) * _CCD + _NY / 2
    ok = (raft >= 0) & (scol >= 0) & (scol < 3) & (srow >= 0) & (srow < 3) & (x >= 0) & (x < _NX) & (y >= 0) & (y < _NY)
    return np.where(ok, raft * 9 + srow * 3 + scol, -1), x, y


def _focal(det, x, y):
    raft, sensor = np.divmod(det, 9)
    srow, scol = np.divmod(sensor, 3)
    row, col = np.nonzero(_RAFTS >= 0)
    return ((col[raft] - 2) * _RAFT + (scol - 1) * _CCD + x - _NX / 2,
            (row[raft] - 2) * _RAFT + (srow - 1) * _CCD + y - _NY / 2)


# ------------------------------------------------------------------------------------------- visits
@dataclass
class _Epochs:
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

    def take(self, idx) -> _Epochs:
        return _Epochs(**{k: np.atleast_1d(v[idx]) for k, v in vars(self).items()})

    def extend(self, other: _Epochs) -> _Epochs:
        return _Epochs(**{k: np.concatenate([v, getattr(other, k)]) for k, v in vars(self).items()})

    @property
    def sigma_px(self) -> np.ndarray:
        """Science PSF core sigma [px]."""
        return self.fwhm / 2.3548 / PIXEL_SCALE

    @property
    def flux_err(self) -> np.ndarray:
        """Sky-limited PSF flux error of the science image [nJy]."""
        return _flux(self.m5) / 5.0

    @property
    def nea(self) -> np.ndarray:
        return _nea(self.sigma_px)

    @property
    def gain(self) -> np.ndarray:
        """nJy per photo-electron: the sky's Poisson variance fixes it."""
        sky_px = _flux(_SKY_MAG[self.band]) * PIXEL_SCALE**2
        return self.flux_err**2 / self.nea / sky_px


def _flux(mag):
    return 10.0 ** (-0.4 * (np.asarray(mag) - ZP_NJY))


def _nea(sigma_px):
    """Noise-equivalent area [px^2] of the double-Gaussian PSF used in cutouts."""
    return 4 * np.pi * sigma_px**2 / 0.8845


_TEMPLATE_ERR = _flux(_M5 + _TEMPLATE_DEPTH) / 5.0           # per band [nJy]
_TEMPLATE_SIGMA_PX = _TEMPLATE_FWHM / 2.3548 / PIXEL_SCALE


def _mjd_of(day: datetime) -> float:
    return (day - _MJD_EPOCH).total_seconds() / 86400.0


def _day_obs(mjd: np.ndarray) -> np.ndarray:
    """Rubin day_obs (YYYYMMDD in UTC-12h) of each time."""
    return np.array([int((_MJD_EPOCH + timedelta(days=float(m) - 0.5)).strftime("%Y%m%d")) for m in np.atleast_1d(mjd)])


def _visit_mjd(visit: int) -> float:
    """Mid-exposure time of a visit numbered day_obs * 100000 + seq: 23:30 UTC on day_obs plus 37 s a visit.

    Numbers whose day_obs is no date count nights from DEFAULT_FIRST_VISIT's night instead.
    """
    day_obs, seq = divmod(visit, 100_000)
    try:
        night = _mjd_of(datetime.strptime(str(day_obs), "%Y%m%d"))
    except ValueError:
        night = _mjd_of(datetime.strptime(str(DEFAULT_FIRST_VISIT // 100_000), "%Y%m%d")) + day_obs
    return night + 23.5 / 24 + (seq * 37.0 + EXPOSURE / 2) / 86400.0


def _conditions(rng, band: np.ndarray):
    """Seeing [arcsec] and 5-sigma depth of visits in these bands."""
    fwhm = np.clip(0.8 * np.exp(0.2 * rng.standard_normal(band.shape)), 0.5, 2.0)
    m5 = _M5[band] + 2.5 * np.log10(0.8 / fwhm) + 0.2 * rng.standard_normal(band.shape)
    return fwhm, m5


def _pointing(rng, mjd: float) -> tuple[float, float]:
    """A field within the survey footprint (dec -90..+30), at airmass < 1.35 at this time."""
    lst, lat = np.radians(_lst(mjd)), np.radians(_SITE_LAT)
    ha = np.radians(rng.uniform(-45, 45, 256))
    dec = np.arcsin(rng.uniform(-1.0, np.sin(np.radians(30.0)), 256))
    alt = np.arcsin(np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha))
    first = int(np.argmax(alt > np.radians(48)))
    return float(np.degrees(lst - ha[first]) % 360.0), float(np.degrees(dec[first]))


def _dither(rng, ra0: float, dec0: float, n: int):
    """Pointings within 0.2 deg of the field centre, with a random rotation each."""
    r, phi = 0.2 * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    ra, dec = _from_plane(r * np.cos(phi), r * np.sin(phi), ra0, dec0)
    return ra, dec, rng.uniform(0, 360, n)


def _past_visits(rng, mjd: float, ra0: float, dec0: float, seq: int) -> _Epochs:
    """The field's visits in the 12 months before mjd: pairs on nights a few days apart, in season."""
    season_age = rng.uniform(0, 200)           # days since this season started; seasons last ~200 days
    mean_gap = rng.uniform(5.0, 25.0)
    ages = np.rint(np.cumsum(1.0 + rng.exponential(mean_gap - 1.0, 200)))
    if rng.uniform() < 0.5:                    # rolling cadence: the field's active weeks, every 2-4 nights
        recent = np.rint(np.cumsum(1.0 + rng.exponential(rng.uniform(1.0, 3.0), 30)))
        ages = np.concatenate([ages[ages > 30], recent[recent <= min(30.0, season_age)]])
    ages = np.unique(ages)
    ages = ages[(ages <= 365) & ((ages <= season_age) | (ages >= season_age + 165))][::-1]
    pair = rng.uniform(size=len(ages)) < 0.8
    night = np.repeat(mjd - ages + rng.normal(0, 0.04, len(ages)), np.where(pair, 2, 1))
    second = np.concatenate([[0, 1] if p else [0] for p in pair]).astype(int) if len(ages) else np.zeros(0, int)
    times = night + second * 0.0229                           # the pair's second visit ~33 min later
    first_band = rng.choice(6, len(ages), p=_BAND_P)
    neighbour = np.where(rng.uniform(size=len(ages)) < 0.6, np.clip(first_band + np.where(first_band < 5, 1, -1), 0, 5),
                         first_band)
    per_night = np.where(pair, 2, 1)
    band = np.where(second == 1, np.repeat(neighbour, per_night), np.repeat(first_band, per_night))
    fwhm, m5 = _conditions(rng, band)
    ra, dec, rot = _dither(rng, ra0, dec0, len(times))
    visit = _day_obs(times) * 100_000 + 50_000 + 2 * (seq % 20_000) + second
    return _Epochs(visit.astype(np.int64), times, band.astype(np.int64), ra, dec, rot, fwhm, m5,
                   np.zeros(len(times), bool))


def _old_visit(rng, mjd: float, seq: int, n: int) -> np.ndarray:
    """Visit ids of first detections made before the 12-month window."""
    return _day_obs(mjd - 366 - rng.uniform(0, 700, n)) * 100_000 + 50_000 + 2 * (seq % 20_000)


# ------------------------------------------------------------------------------------------- populations
def _mag_faint(rng, n, bright, faint, slope=0.24):
    """Magnitudes between bright and faint whose counts grow by 10**slope per magnitude (faint ones dominate)."""
    a = slope * np.log(10)
    return bright + np.log1p(rng.uniform(size=n) * np.expm1(a * (faint - bright))) / a


def _band_flux(mag, color):
    """Flux per band (n, 6) of a source with r magnitude mag and g-r colour color."""
    return _flux(mag[:, None] + color[:, None] * _COLOR_K[None, :])


def _place(rng, n, epoch: _Epochs, edge=None):
    """Uniform positions on the detectors of the current visit (or within 15 px of an edge where edge)."""
    det = rng.integers(0, N_DETECTORS, n)
    x, y = rng.uniform(0, _NX, n), rng.uniform(0, _NY, n)
    if edge is not None:
        near = rng.uniform(0, 15, n)
        side = rng.integers(0, 4, n)
        x = np.where(edge & (side == 0), near, np.where(edge & (side == 1), _NX - 1 - near, x))
        y = np.where(edge & (side == 2), near, np.where(edge & (side == 3), _NY - 1 - near, y))
    fx, fy = _focal(det, x, y)
    ra, dec = _focal_to_sky(fx, fy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
    return ra, dec


def _host(rng, n, out, fraction, offset_scale):
    """Host galaxies (a fraction of sources): r magnitude, size and offset of its centre from the source [arcsec]."""
    has = rng.uniform(size=n) < fraction
    out["host_mag"] = np.where(has, rng.uniform(18.0, 23.0, n), np.nan)
    out["host_sigma"] = rng.uniform(0.3, 1.5, n)
    r = offset_scale * out["host_sigma"] * np.sqrt(rng.exponential(1.0, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    out["host_dx"], out["host_dy"] = r * np.cos(phi), r * np.sin(phi)


_PARAMS = ("period", "amp", "phase", "width", "depth2", "tau", "sf", "drw_t", "drw_d", "t0", "trise", "tfall", "te",
           "u0", "blend", "host_mag", "host_sigma", "host_dx", "host_dy", "bog_flux", "bog_lobe", "bog_sep",
           "trail_len", "trail_angle")


def _base(rng, kind, n, epoch, **extra):
    """A population's common columns; model parameters it does not use stay NaN (asteroid ones are absent)."""
    ra, dec = _place(rng, n, epoch, extra.pop("edge", None))
    out = {"kind": np.full(n, kind), "sub": np.zeros(n, int), "ra": ra, "dec": dec,
           "mag": np.full(n, np.nan), "color": np.zeros(n), "old": np.zeros(n, bool)}
    out.update({name: np.full(n, np.nan) for name in _PARAMS})
    out.update(extra)
    return out


def _sample_var(rng, n, epoch):
    o = _base(rng, VAR, n, epoch)
    sub = rng.choice(4, n, p=[0.25, 0.3, 0.15, 0.3])        # RR Lyrae, eclipsing, long-period, spotted/rotating
    o["sub"] = np.where(sub == 0, _SAWTOOTH, np.where(sub == 1, _ECLIPSE, _SINE))
    kinds = [sub == 0, sub == 1, sub == 2]
    o["period"] = np.select(kinds, [rng.uniform(0.4, 0.8, n), np.exp(rng.uniform(np.log(0.3), np.log(10), n)),
                                    rng.uniform(80, 450, n)], np.exp(rng.uniform(0, np.log(30), n)))
    o["amp"] = np.select(kinds, [rng.uniform(0.4, 1.0, n), rng.uniform(0.1, 1.0, n), rng.uniform(0.5, 3.0, n)],
                         rng.uniform(0.03, 0.3, n))
    o["mag"] = np.where(sub == 3, _mag_faint(rng, n, 15.5, 20.0), _mag_faint(rng, n, 15.5, 22.5))
    o["color"] = np.where(sub == 2, rng.uniform(1.1, 1.6, n), rng.uniform(0.2, 1.3, n))
    o["phase"] = rng.uniform(0, 1, n)
    o["width"] = rng.uniform(0.03, 0.1, n)
    o["depth2"] = rng.uniform(0.1, 0.8, n)
    o["old"] = rng.uniform(size=n) < 0.5
    return o


def _sample_agn(rng, n, epoch):
    o = _base(rng, AGN, n, epoch, mag=_mag_faint(rng, n, 17.5, 22.5), color=rng.normal(0.2, 0.1, n))
    o["tau"] = np.exp(rng.uniform(np.log(50), np.log(500), n))
    o["sf"] = rng.uniform(0.15, 0.4, n)
    o["drw_t"] = np.full(n, epoch.mjd[0])
    o["drw_d"] = rng.normal(0, 1, n) * o["sf"] / np.sqrt(2)
    _host(rng, n, o, 1.0, 0.0)
    o["host_mag"] = o["mag"] - rng.uniform(-1.5, 1.0, n)
    o["old"] = rng.uniform(size=n) < 0.5
    return o


def _sample_transient(rng, n, epoch, kind):
    now = epoch.mjd[0]
    if kind == SN:
        o = _base(rng, SN, n, epoch, mag=_mag_faint(rng, n, 18.5, 23.5), color=rng.uniform(-0.1, 0.3, n))
        o["trise"], o["tfall"] = rng.uniform(1.5, 6.0, n), rng.uniform(15, 50, n)
        peak = rng.uniform(now - 80, now + 8, n)
        _host(rng, n, o, 0.9, 1.5)
    else:
        # Kilonova-like and other fast risers: 0.5 to 4 mag/day on the way up, gone within days.
        o = _base(rng, FAST, n, epoch, mag=rng.uniform(17.5, 21.5, n), color=rng.uniform(0.3, 1.2, n))
        o["trise"], o["tfall"] = rng.uniform(0.3, 1.2, n), rng.uniform(2.0, 8.0, n)
        peak = rng.uniform(now - 1, now + 4, n)
        _host(rng, n, o, 0.5, 2.0)
    o["t0"] = peak - o["trise"] * np.log(np.maximum(o["tfall"] / o["trise"] - 1.0, 1e-3))
    return o


def _sample_sn(rng, n, epoch):
    return _sample_transient(rng, n, epoch, SN)


def _sample_fast(rng, n, epoch):
    return _sample_transient(rng, n, epoch, FAST)


def _sample_ulens(rng, n, epoch):
    o = _base(rng, ULENS, n, epoch, mag=_mag_faint(rng, n, 16.5, 22.5), color=rng.uniform(0.5, 1.5, n))
    o["te"] = np.exp(rng.uniform(np.log(10), np.log(120), n))
    o["u0"] = np.exp(rng.uniform(np.log(0.02), np.log(1.0), n))
    o["t0"] = epoch.mjd[0] + rng.uniform(-1.5, 1.5, n) * o["te"]
    o["blend"] = np.where(rng.uniform(size=n) < 0.8, 1.0, rng.uniform(0.4, 1.0, n))
    return o


def _sample_bogus(rng, n, epoch):
    sub = rng.choice(6, n, p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.1])
    o = _base(rng, BOGUS, n, epoch, edge=sub == _EDGE)
    o["sub"] = sub
    err = epoch.flux_err[0]
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    snr = 4.0 + 3.0 * rng.pareto(1.5, n)
    star = np.where((sub == _RESIDUAL) | ((sub == _DIPOLE) & (rng.uniform(size=n) < 0.6)),
                    np.where(sub == _RESIDUAL, rng.uniform(13.5, 16.5, n), rng.uniform(15.5, 20.0, n)), np.nan)
    # A negative detection needs light in the template to go below: a star or a template artefact.
    negative = (sign < 0) & np.isin(sub, (_EDGE, _NOISE))
    star = np.where(negative, ZP_NJY - 2.5 * np.log10(snr * err * rng.uniform(1.5, 4.0, n)), star)
    o["mag"], o["color"] = star, rng.uniform(0.3, 1.2, n)
    o["bog_flux"] = np.select([sub == _CR, sub == _STREAK, sub == _RESIDUAL],
                              [snr * err, snr * err, sign * rng.uniform(0.01, 0.05, n) * np.nan_to_num(_flux(star))],
                              sign * snr * err)
    o["bog_lobe"] = np.where(sub == _DIPOLE, rng.uniform(6, 40, n) * err, np.nan)
    o["bog_sep"] = np.where(sub == _DIPOLE, rng.uniform(0.2, 1.2, n), np.nan)          # arcsec
    o["trail_len"] = np.where(sub == _STREAK, rng.uniform(5, 60, n), np.nan)           # arcsec
    o["trail_angle"] = rng.uniform(0, 180, n)
    return o


def _sample_sso(rng, n, epoch, known=True):
    """Asteroids seen at this epoch with a self-consistent heliocentric state and MPC orbit."""
    o = _base(rng, SSO if known else MOVER, n, epoch)
    o.update(_asteroids(rng, o["ra"], o["dec"], epoch.mjd[0]))
    return o


def _sample_mover(rng, n, epoch):
    return _sample_sso(rng, n, epoch, known=False)


_SAMPLERS: dict[int, Callable] = {VAR: _sample_var, AGN: _sample_agn, SN: _sample_sn, FAST: _sample_fast,
                                  ULENS: _sample_ulens, SSO: _sample_sso, MOVER: _sample_mover, BOGUS: _sample_bogus}


def _mix(ra0: float, dec0: float) -> np.ndarray:
    """Fraction of alerts of each kind for a field: stars towards the Galactic plane and bulge, asteroids
    towards the ecliptic, extragalactic transients away from the plane."""
    gl, gb = _galactic(ra0, dec0)
    _, beta = _ecliptic(ra0, dec0)
    plane = np.exp(-abs(gb) / 8.0)
    bulge = np.exp(-0.5 * (((gl + 180) % 360 - 180) / 12.0) ** 2 - 0.5 * (gb / 8.0) ** 2)
    sso = 0.015 + 0.09 * np.exp(-abs(beta) / 10.0)
    w = np.array([0.24 + 0.45 * plane + 0.3 * bulge, 0.2 * (1 - 0.85 * plane), 0.07 * (1 - 0.8 * plane), 0.012,
                  0.003 + 0.04 * max(plane, bulge), sso, 0.25 * sso, 0.22])
    return w / w.sum()


# ------------------------------------------------------------------------------------------- light curves
def _bazin(t, t0, trise, tfall):
    """Rise-and-decline light curve normalised to a peak of 1 (numerically stable far from t0)."""
    x = t - t0
    xp = trise * np.log(np.maximum(tfall / trise - 1.0, 1e-3))
    return np.exp(-x / tfall - np.logaddexp(0.0, -x / trise) + xp / tfall + np.logaddexp(0.0, -xp / trise))


def _var_shape(sub, phase, width, depth2):
    """Magnitude offset per unit amplitude: sine, RR Lyrae sawtooth (fast rise) or two eclipses."""
    saw = np.where(phase < 0.15, 0.5 - phase / 0.15, -0.5 + (phase - 0.15) / 0.85)
    wrapped = (phase + 0.5) % 1.0 - 0.5
    ecl = np.exp(-0.5 * (wrapped / width) ** 2) + depth2 * np.exp(-0.5 * ((np.abs(wrapped) - 0.5) / width) ** 2)
    return np.select([sub == _SAWTOOTH, sub == _ECLIPSE], [saw, ecl], 0.5 * np.sin(2 * np.pi * phase))


def _template_point(o: dict) -> np.ndarray:
    """Flux per band (n, 6) of the object itself in the template (the mean state of a variable)."""
    kind, n = o["kind"], len(o["kind"])
    in_template = np.isin(kind, (VAR, AGN, ULENS, BOGUS))[:, None]
    flux = np.where(in_template, np.nan_to_num(_band_flux(o["mag"], o["color"])), 0.0)
    var = np.flatnonzero(kind == VAR)
    if len(var):
        phases = np.linspace(0, 1, 32, endpoint=False)
        s = _var_shape(o["sub"][var, None], phases[None, :], o["width"][var, None], o["depth2"][var, None])
        amp = o["amp"][var, None, None] * np.where(o["sub"][var] == _ECLIPSE, 1.0, 0.0)[:, None, None]
        amp = amp + (o["amp"][var] * (o["sub"][var] != _ECLIPSE))[:, None, None] * _PULSE_K[None, :, None]
        flux[var] *= np.mean(10 ** (-0.4 * amp * s[:, None, :]), axis=2)
    return flux + np.zeros((n, 6))


def _model_flux(o: dict, t: np.ndarray, band: np.ndarray) -> np.ndarray:
    """True difference flux (n, E) of non-stochastic kinds at times t in bands band (template subtracted)."""
    kind = o["kind"]
    n, e = len(kind), len(t)
    out = np.zeros((n, e))
    point = _band_flux(np.nan_to_num(o["mag"], nan=99.0), o["color"])
    tmpl = o["tmpl"]
    var = np.flatnonzero(kind == VAR)
    if len(var):
        sub = o["sub"][var, None]
        phase = ((t[None, :] - 60000.0) / o["period"][var, None] + o["phase"][var, None]) % 1.0
        k = np.where(sub == _ECLIPSE, 1.0, _PULSE_K[band][None, :])
        s = _var_shape(sub, phase, o["width"][var, None], o["depth2"][var, None])
        out[var] = point[var][:, band] * 10 ** (-0.4 * o["amp"][var, None] * k * s) - tmpl[var][:, band]
    tr = np.flatnonzero(np.isin(kind, (SN, FAST)))
    if len(tr):
        # Redder bands decline more slowly; every band still declines more slowly than it rises.
        tfall = np.maximum(o["tfall"][tr, None] * _FALL_K[band][None, :], 1.5 * o["trise"][tr, None])
        out[tr] = point[tr][:, band] * _bazin(t[None, :], o["t0"][tr, None], o["trise"][tr, None], tfall)
    ml = np.flatnonzero(kind == ULENS)
    if len(ml):
        u = np.hypot(o["u0"][ml, None], (t[None, :] - o["t0"][ml, None]) / o["te"][ml, None])
        magnification = (u**2 + 2) / (u * np.sqrt(u**2 + 4))
        out[ml] = o["blend"][ml, None] * point[ml][:, band] * (magnification - 1.0)
    return out


def _drw(rng, o: dict, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Damped-random-walk magnitude offsets (k, E) at times t, conditioned on each AGN's anchor state.

    The walk is Markov and time-reversible, so it steps outwards from the anchor, into the past for
    history and into the future for a revisit.
    """
    tau, sigma = o["tau"][idx], o["sf"][idx] / np.sqrt(2)
    anchor_t, anchor_d = o["drw_t"][idx], o["drw_d"][idx]
    out = np.zeros((len(idx), len(t)))
    offset = t - anchor_t[0]                  # objects drawn together share their anchor time
    for side in (np.flatnonzero(offset < 0)[::-1], np.flatnonzero(offset >= 0)):
        prev_t, prev_d = anchor_t, anchor_d
        for j in side:
            a = np.exp(-np.abs(t[j] - prev_t) / tau)
            prev_d = prev_d * a + sigma * np.sqrt(1 - a**2) * rng.standard_normal(len(idx))
            prev_t = np.full(len(idx), t[j])
            out[:, j] = prev_d
    return out


def _agn_flux(o: dict, idx: np.ndarray, d: np.ndarray, band: np.ndarray) -> np.ndarray:
    point = _band_flux(o["mag"][idx], o["color"][idx])[:, band]
    return point * (10 ** (-0.4 * d * _AGN_K[band][None, :]) - 1.0)


def _flux_at(rng, o: dict, t: np.ndarray, band: np.ndarray) -> np.ndarray:
    """True difference flux (n, E) of any kind; AGN walk from their anchor, others are closed-form."""
    out = _model_flux(o, t, band)
    agn = np.flatnonzero(o["kind"] == AGN)
    if len(agn):
        at_anchor = np.all(np.abs(t[None, :] - o["drw_t"][agn, None]) < 1e-9, axis=0)
        d = np.where(at_anchor[None, :], o["drw_d"][agn, None], 0.0)
        if not at_anchor.all():
            d[:, ~at_anchor] = _drw(rng, o, agn, t[~at_anchor])
        out[agn] = _agn_flux(o, agn, d, band)
    bogus = np.flatnonzero(o["kind"] == BOGUS)
    out[bogus] = o["bog_flux"][bogus, None]
    sso = np.flatnonzero(np.isin(o["kind"], (SSO, MOVER)))
    if len(sso):
        mag = o["vmag"][sso, None] + _SSO_COLOR[band][None, :] + o["rot_amp"][sso, None] * np.sin(
            2 * np.pi * (t[None, :] / o["rot_period"][sso, None] + o["phase"][sso, None]))
        out[sso] = _flux(mag)
    return out


# ------------------------------------------------------------------------------------------- asteroids
def _kepler(mean_anomaly, e):
    ecc = mean_anomaly + e * np.sin(mean_anomaly)
    for _ in range(12):
        ecc = ecc - (ecc - e * np.sin(ecc) - mean_anomaly) / (1 - e * np.cos(ecc))
    return ecc


_LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"     # MPC half-month and order letters (no I)
_CYCLE = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _designations(rng, n):
    """(unpacked, packed) MPC provisional designations, e.g. ('2011 QF99', 'K11Q99F')."""
    year = np.clip(2026 - rng.exponential(8.0, n).astype(int), 1990, 2025)
    half = rng.integers(0, 24, n)
    order = rng.integers(0, 25, n)
    cycle = np.minimum(rng.exponential(60.0, n).astype(int), 619)
    unpacked, packed = [], []
    for y, h, o, c in zip(year.tolist(), half.tolist(), order.tolist(), cycle.tolist()):
        unpacked.append(f"{y} {_LETTERS[h]}{_LETTERS[o]}{c if c else ''}")
        packed.append(f"{'IJK'[y // 100 - 18]}{y % 100:02d}{_LETTERS[h]}{_CYCLE[c // 10]}{c % 10}{_LETTERS[o]}")
    return np.array(unpacked), np.array(packed)


def _asteroids(rng, ra, dec, mjd):
    """Orbit, geometry, ephemeris and photometry of asteroids seen in directions (ra, dec) at mjd."""
    n = len(ra)
    cls = rng.choice(4, n, p=[0.9, 0.03, 0.05, 0.02])                 # main belt, NEO, Hilda/Trojan, TNO
    a = np.select([cls == 0, cls == 1, cls == 2], [rng.uniform(2.1, 3.3, n), rng.uniform(1.0, 2.8, n),
                  rng.uniform(3.9, 5.3, n)], rng.uniform(35, 50, n))
    e = np.where(cls == 1, rng.uniform(np.clip(1 - 1.3 / a, 0.05, 0.79), 0.8), rng.uniform(0, 0.25, n))   # NEO: q < 1.3
    inc = np.radians(np.abs(rng.normal(0, np.select([cls == 1], [15.0], 9.0), n)))
    h_lo = np.select([cls == 1, cls == 2, cls == 3], [15.0, 9.0, 3.0], 12.0)
    h_hi = np.select([cls == 1, cls == 2, cls == 3], [25.0, 17.0, 9.0], 22.5)
    big_h = _mag_faint(rng, n, h_lo, h_hi, slope=0.3)
    ecc_anom = _kepler(rng.uniform(0, 2 * np.pi, n), e)
    r = a * (1 - e * np.cos(ecc_anom))
    nu = 2 * np.arctan2(np.sqrt(1 + e) * np.sin(ecc_anom / 2), np.sqrt(1 - e) * np.cos(ecc_anom / 2))

    sun, sun_dist = _sun(mjd)
    earth = -sun * sun_dist
    los = _unit(ra, dec)
    proj = los @ earth
    disc = proj**2 - sun_dist**2 + r**2
    seen = (disc > 0) & (np.sqrt(np.maximum(disc, 0)) > proj)     # the line of sight reaches distance r
    delta = np.where(seen, -proj + np.sqrt(np.maximum(disc, 0)), 1.0)
    pos = earth[None, :] + delta[:, None] * los
    r = np.linalg.norm(pos, axis=1)
    a = np.maximum(a, r / (1 + e) + 1e-6)            # keep the orbit able to reach r (only for r < q edge cases)
    rhat = pos / r[:, None]
    speed = np.sqrt(_GM_SUN * (2 / r - 1 / a))
    gamma = np.arctan2(e * np.sin(nu), 1 + e * np.cos(nu))            # flight-path angle
    t0 = np.cross(_ECLIPTIC_POLE, rhat)
    t0 /= np.linalg.norm(t0, axis=1)[:, None]
    psi = inc * np.where(rng.uniform(size=n) < 0.5, -1, 1)
    tangent = t0 * np.cos(psi)[:, None] + np.cross(rhat, t0) * np.sin(psi)[:, None]
    vel = speed[:, None] * (np.sin(gamma)[:, None] * rhat + np.cos(gamma)[:, None] * tangent)
    earth_vel = np.cross(_ECLIPTIC_POLE, earth / sun_dist) * 2 * np.pi / 365.25 * sun_dist
    topo, topo_vel = pos - earth, vel - earth_vel

    cos_phase = np.sum(pos * topo, axis=1) / (r * delta)
    phase = np.arccos(np.clip(cos_phase, -1, 1))
    tan_half = np.tan(phase / 2)
    phi = 0.85 * np.exp(-3.33 * tan_half**0.63) + 0.15 * np.exp(-1.87 * tan_half**1.22)
    vmag = np.where(seen, big_h + 5 * np.log10(r * delta) - 2.5 * np.log10(np.maximum(phi, 1e-6)), 99.0)
    v_perp = topo_vel - np.sum(topo_vel * los, axis=1)[:, None] * los
    rar, decr = np.radians(ra), np.radians(dec)
    east = np.stack([-np.sin(rar), np.cos(rar), np.zeros(n)], axis=1)
    north = np.stack([-np.sin(decr) * np.cos(rar), -np.sin(decr) * np.sin(rar), np.cos(decr)], axis=1)
    rate_ra = np.degrees(np.sum(v_perp * east, axis=1) / delta)
    rate_dec = np.degrees(np.sum(v_perp * north, axis=1) / delta)
    unpacked, packed = _designations(rng, n)
    out = {
        "cls": cls, "H": big_h, "vmag": vmag, "r": r, "delta": delta, "phase_angle": np.degrees(phase),
        "elongation": np.degrees(np.arccos(np.clip(los @ sun, -1, 1))),
        "helio_rate": np.sum(pos * vel, axis=1) / r * _AU_PER_DAY_KMS,
        "topo_rate": np.sum(topo * topo_vel, axis=1) / delta * _AU_PER_DAY_KMS,
        "rate_ra": rate_ra, "rate_dec": rate_dec, "ss_t": np.full(n, mjd),
        "rot_amp": rng.uniform(0.0, 0.3, n), "rot_period": rng.uniform(0.1, 1.0, n), "phase": rng.uniform(0, 1, n),
        "eph_err": np.exp(rng.uniform(np.log(0.05), np.log(1.5), n)) * np.where(cls == 1, 3.0, 1.0),
        "designation": unpacked, "packed": packed,
        "ss_id": np.array([int.from_bytes(p.encode().ljust(8), "big") for p in packed.tolist()], dtype=np.int64),
        "mpc_id": rng.integers(1, 2**31 - 1, n), "u_param": rng.integers(0, 7, n),
        "nopp": rng.integers(1, 15, n), "nobs": rng.integers(15, 3000, n),
        "orbit_created": rng.uniform(0, 1, n),
    }
    for name, vec in (("helio", pos), ("helio_v", vel * _AU_PER_DAY_KMS), ("topo", topo),
                      ("topo_v", topo_vel * _AU_PER_DAY_KMS)):
        for axis, comp in zip("xyz", vec.T):
            out[f"{name}_{axis}" if not name.endswith("_v") else f"{name}{axis}"] = comp
    out.update(_elements(pos @ _TO_ECLIPTIC.T, vel @ _TO_ECLIPTIC.T))
    return out


def _elements(pos, vel):
    """Heliocentric ecliptic Keplerian elements from state vectors [AU, AU/day]."""
    r = np.linalg.norm(pos, axis=1)
    v2 = np.sum(vel**2, axis=1)
    h = np.cross(pos, vel)
    hn = np.linalg.norm(h, axis=1)
    node_vec = np.stack([-h[:, 1], h[:, 0], np.zeros(len(r))], axis=1)
    nn = np.maximum(np.linalg.norm(node_vec, axis=1), 1e-12)
    e_vec = ((v2 - _GM_SUN / r)[:, None] * pos - np.sum(pos * vel, axis=1)[:, None] * vel) / _GM_SUN
    e = np.linalg.norm(e_vec, axis=1)
    a = 1 / (2 / r - v2 / _GM_SUN)
    inc = np.degrees(np.arccos(np.clip(h[:, 2] / hn, -1, 1)))
    node = np.degrees(np.arctan2(node_vec[:, 1], node_vec[:, 0])) % 360
    argperi = np.degrees(np.arccos(np.clip(np.sum(node_vec * e_vec, axis=1) / (nn * e), -1, 1)))
    argperi = np.where(e_vec[:, 2] < 0, 360 - argperi, argperi)
    nu = np.arccos(np.clip(np.sum(e_vec * pos, axis=1) / (e * r), -1, 1))
    nu = np.where(np.sum(pos * vel, axis=1) < 0, 2 * np.pi - nu, nu)
    ecc_anom = 2 * np.arctan2(np.sqrt(1 - e) * np.sin(nu / 2), np.sqrt(1 + e) * np.cos(nu / 2))
    mean_anomaly = np.degrees(ecc_anom - e * np.sin(ecc_anom)) % 360
    mean_motion = np.degrees(np.sqrt(_GM_SUN / a**3))
    return {"a": a, "e": e, "q": a * (1 - e), "i": inc, "node": node, "argperi": argperi,
            "mean_anomaly": mean_anomaly, "mean_motion": mean_motion}


# ------------------------------------------------------------------------------------------- measurement
def _host_fit(o: dict, idx, band, sigma_px) -> np.ndarray:
    """PSF-fit flux of the host galaxy at the source position, for a PSF of core sigma sigma_px."""
    host = np.nan_to_num(_band_flux(np.nan_to_num(o["host_mag"][idx], nan=99.0), np.full(len(idx), _HOST_COLOR)))
    flux = np.take_along_axis(host, np.broadcast_to(band, np.shape(sigma_px)).astype(int), axis=1) \
        if np.ndim(sigma_px) == 2 else host[:, band]
    sp = np.asarray(sigma_px) * PIXEL_SCALE
    sh = o["host_sigma"][idx][:, None]
    d2 = (o["host_dx"][idx] ** 2 + o["host_dy"][idx] ** 2)[:, None]
    return flux * 2 * sp**2 / (sh**2 + 2 * sp**2) * np.exp(-d2 / (2 * (sh**2 + 2 * sp**2)))


def _measure(rng, o: dict, diff: np.ndarray, epochs: _Epochs) -> dict[str, np.ndarray]:
    """Photometry (n, E) of objects o at epochs: difference, science, template and aperture fluxes and the
    detection S/N. psfFlux = scienceFlux - templateFlux up to host PSF mismatch and subtraction residuals."""
    band = epochs.band[None, :]
    n = len(diff)
    rows = np.arange(n)[:, None]
    point = o["tmpl"][rows, band]
    host_t = np.nan_to_num(_host_fit(o, np.arange(n), epochs.band, np.full((n, len(epochs)), _TEMPLATE_SIGMA_PX)))
    host_s = np.nan_to_num(_host_fit(o, np.arange(n), epochs.band, np.broadcast_to(epochs.sigma_px, (n, len(epochs)))))
    tmpl = point + host_t
    science = point + host_s + diff
    gain = epochs.gain[None, :]
    var_sci = epochs.flux_err[None, :] ** 2 + gain * np.maximum(science, 0)
    var_tmpl = _TEMPLATE_ERR[band] ** 2 + gain / _TEMPLATE_COADD * np.maximum(tmpl, 0)
    resid = 0.005 * tmpl
    n_sci = rng.standard_normal(diff.shape) * np.sqrt(var_sci)
    n_tmpl = o["tmpl_noise"][rows, band] * np.sqrt(var_tmpl)
    err = np.sqrt(var_sci + var_tmpl + resid**2)
    psf = diff + n_sci - n_tmpl + resid * rng.standard_normal(diff.shape)
    snr = np.abs(psf) / err * np.exp(0.03 * rng.standard_normal(diff.shape))
    lobes = np.flatnonzero((o["kind"] == BOGUS) & (o["sub"] == _DIPOLE))
    snr[lobes] = np.maximum(snr[lobes], o["bog_lobe"][lobes, None] / err[lobes])
    area = np.pi * 12.0**2
    sky_px = epochs.flux_err[None, :] ** 2 / epochs.nea[None, :] + _TEMPLATE_ERR[band] ** 2 / _nea(_TEMPLATE_SIGMA_PX)
    var_ap = sky_px * area + gain * np.maximum(science, 0)
    return {"diff": diff, "psf": psf, "err": err, "snr": snr, "sci": science + n_sci, "sci_err": np.sqrt(var_sci),
            "tmpl": tmpl + n_tmpl, "tmpl_err": np.sqrt(var_tmpl),
            "ap": 0.97 * diff + np.sqrt(var_ap) * rng.standard_normal(diff.shape), "ap_err": np.sqrt(var_ap)}


def _coverage(o: dict, idx, epochs: _Epochs):
    """Detector, x, y (k, E) of objects idx at each epoch's pointing (-1 where off the focal plane)."""
    fx, fy = _sky_to_focal(o["ra"][idx, None], o["dec"][idx, None], epochs.ra0[None, :], epochs.dec0[None, :],
                           epochs.rot[None, :])
    return _detector(fx, fy)


# ------------------------------------------------------------------------------------------- drawing objects
def _finish(rng, o: dict) -> dict:
    n = len(o["kind"])
    o["tmpl"] = _template_point(o)
    o["tmpl_noise"] = rng.standard_normal((n, 6))
    return o


def _draw(rng, kind: int, count: int, epochs: _Epochs, now: int, forbid: np.ndarray) -> dict:
    """Up to count objects of one kind detected (>= 5 sigma) at epoch now. A history kind must also have gone
    undetected (off the detectors or < 5 sigma) at the forbid epochs, simulated visits where it raised no
    alert; those measurements are kept (sim_*) for its history."""
    epoch = epochs.take(now)
    parts, have = [], 0
    for _ in range(40):
        if have >= count:
            break
        o = _finish(rng, _SAMPLERS[kind](rng, max(16, 3 * (count - have)), epoch))
        m = _measure(rng, o, _flux_at(rng, o, epoch.mjd, epoch.band), epoch)
        ok = m["snr"][:, 0] >= 5
        seen = {}
        if kind in _HISTORY_KINDS and len(forbid):
            past = epochs.take(forbid)
            det, _, _ = _coverage(o, np.arange(len(ok)), past)
            seen = _measure(rng, o, _flux_at(rng, o, past.mjd, past.band), past)
            ok &= ((det < 0) | (seen["snr"] < 5)).all(axis=1)
        keep = np.flatnonzero(ok)[: count - have]
        part = _take(o, keep)
        part.update({f"now_{k}": v[keep, 0] for k, v in m.items()})
        part.update({f"sim_{k}": v[keep] for k, v in seen.items()})
        parts.append(part)
        have += len(keep)
    return _concat(parts)


# ------------------------------------------------------------------------------------------- diaSource rows
_FLAG_COLUMNS = [c.name for c in DIA_SOURCE if c.type == "boolean"]


def _ids(visit: np.ndarray, slot: np.ndarray) -> np.ndarray:
    return (np.asarray(visit, np.int64) << _ID_BITS) | np.asarray(slot, np.int64)


def _source_table(rng, o: dict, oi: np.ndarray, epochs: _Epochs, ei: np.ndarray, m: dict[str, np.ndarray],
                  ra: np.ndarray, dec: np.ndarray) -> dict[str, np.ndarray]:
    """diaSource columns for rows (object oi measured at epoch ei) with photometry m and true positions."""
    n = len(oi)
    kind, sub = o["kind"][oi], o["sub"][oi]
    bogus = kind == BOGUS
    is_sub = {s: bogus & (sub == s) for s in range(6)}
    moving = np.isin(kind, (SSO, MOVER))
    ep = epochs.take(ei)
    sigma_arcsec = ep.fwhm / 2.3548
    snr = m["snr"]
    pos_err = np.hypot(sigma_arcsec / np.maximum(snr, 1.0), 0.01)                    # arcsec
    cosd = np.cos(np.radians(dec))
    ra_m = ra + rng.standard_normal(n) * pos_err / 3600 / cosd
    dec_m = dec + rng.standard_normal(n) * pos_err / 3600
    det, x, y = _detector(*_sky_to_focal(ra_m, dec_m, ep.ra0, ep.dec0, ep.rot))
    det0, x0, y0 = _detector(*_sky_to_focal(ra, dec, ep.ra0, ep.dec0, ep.rot))
    moved_off = det != det0                          # a centroid error across a detector edge: keep the detector
    det, x, y = np.where(moved_off, det0, det), np.where(moved_off, x0, x), np.where(moved_off, y0, y)
    x, y = np.clip(x, 0, _NX - 1), np.clip(y, 0, _NY - 1)

    rate_ra = o["rate_ra"][oi] if "rate_ra" in o else np.zeros(n)          # asteroids only
    rate_dec = o["rate_dec"][oi] if "rate_dec" in o else np.zeros(n)
    trail = np.where(moving, np.hypot(rate_ra, rate_dec) * EXPOSURE / 86400 * 3600,
                     np.abs(rng.normal(0, 0.15 + 1 / np.maximum(snr, 1))))
    trail = np.where(is_sub[_STREAK], o["trail_len"][oi], trail)
    trail_angle = np.where(moving, np.degrees(np.arctan2(rate_ra, rate_dec)) % 180,
                           np.where(is_sub[_STREAK], o["trail_angle"][oi], rng.uniform(0, 180, n)))
    sig_px = ep.sigma_px
    bbox = np.rint((6 + 2.5 * np.log2(1 + snr / 5)) * sig_px * np.exp(0.15 * rng.standard_normal(n))
                   + trail / PIXEL_SCALE).astype(int)
    ndata = (0.7 * bbox**2).astype(int)
    var_px = m["err"] ** 2 / ep.nea

    chi2 = ndata * np.exp(0.1 * rng.standard_normal(n)) * np.where(bogus, rng.uniform(1.5, 6, n), 1.0)
    dipole_try = is_sub[_DIPOLE] | (~bogus & ~moving & (rng.uniform(size=n) < 0.08))
    # A dipole's PSF flux is its lobe difference times the PSF's overlap with itself shifted by half the separation.
    sep = np.where(is_sub[_DIPOLE], o["bog_sep"][oi], np.abs(rng.normal(0, 0.08, n)))
    overlap = np.exp(-((sep / 2 / PIXEL_SCALE) ** 2) / (4 * sig_px**2))
    lobe = np.where(is_sub[_DIPOLE], o["bog_lobe"][oi], np.abs(m["psf"]) * 0.55)
    lobe_diff = np.where(is_sub[_DIPOLE], m["psf"] / overlap, m["psf"])

    psf_moment = sigma_arcsec**2
    e1, e2 = 0.05 * rng.standard_normal(n), 0.05 * rng.standard_normal(n)
    extra = (trail**2 / 12)
    ang = np.radians(trail_angle)
    reliability = np.where(bogus, np.where(rng.uniform(size=n) < 0.05, rng.beta(4, 2, n), rng.beta(1.2, 6, n)),
                           np.clip(rng.beta(9, 1.0, n) - 0.3 * np.exp(-(snr - 5) / 4), 0.0, 1.0))
    extendedness = np.select([is_sub[_CR], is_sub[_DIPOLE] | is_sub[_RESIDUAL],
                              is_sub[_STREAK] | moving & (trail > 1.5), is_sub[_EDGE] | is_sub[_NOISE]],
                             [rng.uniform(0, 0.05, n), rng.beta(4, 2, n), rng.beta(5, 1.5, n), rng.beta(2, 2, n)],
                             rng.beta(1.2, 12, n))
    processed = ep.mjd + (EXPOSURE / 2 + rng.uniform(40, 200, n)) / 86400
    saturated = ~moving & (m["tmpl"] > _flux(16.0))
    flags = {name: np.zeros(n, bool) for name in _FLAG_COLUMNS}
    flags.update({
        "centroid_flag": is_sub[_EDGE] & (rng.uniform(size=n) < 0.3),
        "apFlux_flag_apertureTruncated": (x < 12) | (y < 12) | (x > _NX - 13) | (y > _NY - 13),
        "isNegative": m["psf"] < 0,
        "psfFlux_flag_edge": is_sub[_EDGE], "forced_PsfFlux_flag_edge": is_sub[_EDGE],
        "trail_flag_edge": is_sub[_EDGE] | is_sub[_STREAK] & (rng.uniform(size=n) < 0.4),
        "isDipole": is_sub[_DIPOLE], "dipoleFitAttempted": dipole_try,
        "pixelFlags_bad": rng.uniform(size=n) < 0.01,
        "pixelFlags_cr": is_sub[_CR], "pixelFlags_crCenter": is_sub[_CR],
        "pixelFlags_edge": is_sub[_EDGE], "pixelFlags_nodata": is_sub[_EDGE] & (rng.uniform(size=n) < 0.2),
        "pixelFlags_interpolated": is_sub[_RESIDUAL] | (rng.uniform(size=n) < 0.04),
        "pixelFlags_interpolatedCenter": is_sub[_RESIDUAL] & (rng.uniform(size=n) < 0.5),
        "pixelFlags_saturated": is_sub[_RESIDUAL] | saturated,
        "pixelFlags_saturatedCenter": (is_sub[_RESIDUAL] | saturated) & (rng.uniform(size=n) < 0.6),
        "pixelFlags_suspect": is_sub[_NOISE] & (rng.uniform(size=n) < 0.2) | (rng.uniform(size=n) < 0.02),
        "pixelFlags_streak": is_sub[_STREAK], "pixelFlags_streakCenter": is_sub[_STREAK],
        "glint_trail": is_sub[_STREAK] & (rng.uniform(size=n) < 0.3),
    })
    slot = o["slot"][oi]
    nan = np.full(n, np.nan)
    table = {
        "diaSourceId": _ids(ep.visit, slot), "visit": ep.visit, "detector": det,
        "diaObjectId": np.where(kind == SSO, -1, o["object_id"][oi]),
        "ssObjectId": np.where(kind == SSO, o["ss_id"][oi] if "ss_id" in o else -1, -1),
        "parentDiaSourceId": np.full(n, -1),
        "midpointMjdTai": ep.mjd, "exposureTime": np.full(n, EXPOSURE),
        "ra": ra_m, "raErr": pos_err / 3600, "dec": dec_m, "decErr": pos_err / 3600,
        "ra_dec_Cov": (pos_err / 3600) ** 2 * 0.05 * rng.standard_normal(n),
        "x": x, "xErr": pos_err / PIXEL_SCALE, "y": y, "yErr": pos_err / PIXEL_SCALE,
        "apFlux": m["ap"], "apFluxErr": m["ap_err"], "snr": snr,
        "psfFlux": m["psf"], "psfFluxErr": m["err"],
        "psfLnL": -0.5 * chi2 - 0.5 * ndata * np.log(2 * np.pi * var_px), "psfChi2": chi2, "psfNdata": ndata,
        "trailFlux": m["psf"] * (1 + 0.03 * rng.standard_normal(n)), "trailFluxErr": m["err"] * 1.05,
        "trailRa": ra_m + rng.standard_normal(n) * pos_err / 3600 / cosd, "trailRaErr": pos_err * 1.2 / 3600,
        "trailDec": dec_m + rng.standard_normal(n) * pos_err / 3600, "trailDecErr": pos_err * 1.2 / 3600,
        "trailLength": trail, "trailLengthErr": 2 * pos_err + 0.02 * trail,
        "trailAngle": trail_angle, "trailAngleErr": np.degrees(np.minimum(np.pi, pos_err / np.maximum(trail, 0.05))),
        "trailChi2": chi2 * rng.uniform(0.9, 1.0, n), "trailNdata": ndata,
        "dipoleMeanFlux": np.where(dipole_try, lobe, nan),
        "dipoleMeanFluxErr": np.where(dipole_try, m["err"] * 0.8, nan),
        "dipoleFluxDiff": np.where(dipole_try, lobe_diff, nan),
        "dipoleFluxDiffErr": np.where(dipole_try, m["err"] * 1.2, nan),
        "dipoleLength": np.where(dipole_try, sep, nan),
        "dipoleAngle": np.where(dipole_try, rng.uniform(0, 180, n), nan),
        "dipoleChi2": np.where(dipole_try, chi2 * rng.uniform(0.7, 1.1, n), nan),
        "dipoleNdata": np.where(dipole_try, ndata, 0),
        "scienceFlux": m["sci"], "scienceFluxErr": m["sci_err"],
        "templateFlux": m["tmpl"], "templateFluxErr": m["tmpl_err"],
        "ixx": psf_moment * (1 + e1) + extra * np.sin(ang) ** 2,
        "iyy": psf_moment * (1 - e1) + extra * np.cos(ang) ** 2,
        "ixy": psf_moment * e2 + extra * np.sin(ang) * np.cos(ang),
        "ixxPSF": psf_moment * 1.01, "iyyPSF": psf_moment * 0.99, "ixyPSF": psf_moment * 0.005,
        "extendedness": extendedness, "reliability": reliability, "band": np.array(list(BANDS))[ep.band],
        "timeProcessedMjdTai": processed, "bboxSize": bbox,
        "_oi": oi, "_band": ep.band,
    }
    table.update(flags)
    return table


_SOURCE_CONSTANTS = {"reliabilityVersion": RELIABILITY_VERSION, "trailAlgorithm": 1, "timeWithdrawnMjdTai": None}


def _forced_table(rng, o: dict, oi, epochs: _Epochs, ei, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """diaForcedSource columns: forced PSF photometry at the diaObject position in every covered visit."""
    ep = epochs.take(ei)
    det, _, _ = _detector(*_sky_to_focal(o["ra"][oi], o["dec"][oi], ep.ra0, ep.dec0, ep.rot))
    n = len(oi)
    return {
        "diaForcedSourceId": _ids(ep.visit, o["slot"][oi] | _FORCED_BIT), "diaObjectId": o["object_id"][oi],
        "ra": o["ra"][oi], "dec": o["dec"][oi], "visit": ep.visit, "detector": det,
        "psfFlux": m["psf"] + 0.1 * m["err"] * rng.standard_normal(n), "psfFluxErr": m["err"],
        "midpointMjdTai": ep.mjd, "scienceFlux": m["sci"], "scienceFluxErr": m["sci_err"],
        "band": np.array(list(BANDS))[ep.band],
        "timeProcessedMjdTai": ep.mjd + (EXPOSURE / 2 + rng.uniform(40, 200, n)) / 86400,
        "_oi": oi, "_band": ep.band,
    }


# ------------------------------------------------------------------------------------------- diaObject rows
def _grouped(keys: np.ndarray, values: np.ndarray, size: int, reduce: Callable) -> np.ndarray:
    out = np.full(size, np.nan)
    if len(keys):
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], values[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        out[k[starts]] = reduce(v, starts)
    return out


def _object_table(n: int, object_id: np.ndarray, sources: dict, forced: dict, current: dict) -> dict:
    """diaObject columns summarising each object's detections (history + this one) and forced photometry."""
    oi, band = sources["_oi"], sources["_band"]
    key, size = oi * 6 + band, n * 6
    flux, err = sources["psfFlux"], sources["psfFluxErr"]
    w = 1 / err**2
    count = np.bincount(key, minlength=size).astype(float)
    sum_w = np.bincount(key, w, minlength=size)
    mean = np.bincount(key, w * flux, minlength=size) / np.where(sum_w > 0, sum_w, np.nan)
    sq = np.bincount(key, flux**2, minlength=size)
    plain = np.bincount(key, flux, minlength=size)
    sigma = np.sqrt(np.maximum(sq / np.maximum(count, 1) - (plain / np.maximum(count, 1)) ** 2, 0)
                    * count / np.maximum(count - 1, 1))
    sigma[count < 2] = np.nan
    sci_w = 1 / sources["scienceFluxErr"] ** 2
    sci_sw = np.bincount(key, sci_w, minlength=size)
    sci_mean = np.bincount(key, sci_w * sources["scienceFlux"], minlength=size) / np.where(sci_sw > 0, sci_sw, np.nan)
    fkey = forced["_oi"] * 6 + forced["_band"]
    fw = 1 / forced["psfFluxErr"] ** 2
    f_sw = np.bincount(fkey, fw, minlength=size)
    fp_mean = np.bincount(fkey, fw * forced["psfFlux"], minlength=size) / np.where(f_sw > 0, f_sw, np.nan)
    order = np.lexsort((sources["midpointMjdTai"], key))
    ks, ts, fs = key[order], sources["midpointMjdTai"][order], flux[order]
    same = ks[1:] == ks[:-1]
    slopes = np.abs(np.diff(fs)) / np.maximum(np.diff(ts), 1e-4)
    max_slope = _grouped(ks[1:][same], slopes[same], size, np.maximum.reduceat)
    fmin = _grouped(key, flux, size, np.minimum.reduceat)
    fmax = _grouped(key, flux, size, np.maximum.reduceat)
    err_mean = np.bincount(key, err, minlength=size) / np.where(count > 0, count, np.nan)

    wpos = 1 / sources["raErr"] ** 2
    sw = np.bincount(oi, wpos, minlength=n)
    # Weighted mean position; ra averaged as an offset from the current position to survive 0/360.
    dra = (sources["ra"] - current["ra"][oi] + 180) % 360 - 180
    ra = (current["ra"] + np.bincount(oi, wpos * dra, minlength=n) / sw) % 360
    dec = np.bincount(oi, wpos * sources["dec"], minlength=n) / sw
    pos_err = 1 / np.sqrt(sw)
    tmin = _grouped(oi, sources["midpointMjdTai"], n, np.minimum.reduceat)
    tmax = _grouped(oi, sources["midpointMjdTai"], n, np.maximum.reduceat)
    table = {"diaObjectId": object_id, "validityStartMjdTai": current["timeProcessedMjdTai"],
             "ra": ra, "raErr": pos_err, "dec": dec, "decErr": pos_err, "ra_dec_Cov": pos_err**2 * 0.01,
             "firstDiaSourceMjdTai": tmin, "lastDiaSourceMjdTai": tmax,
             "nDiaSources": np.bincount(oi, minlength=n)}
    fp_err = 1 / np.sqrt(np.where(f_sw > 0, f_sw, np.nan))
    for b, name in enumerate(BANDS):
        cols = slice(b, size, 6)
        table.update({
            f"{name}_psfFluxMean": mean[cols],
            f"{name}_psfFluxMeanErr": 1 / np.sqrt(np.where(sum_w[cols] > 0, sum_w[cols], np.nan)),
            f"{name}_psfFluxSigma": sigma[cols], f"{name}_psfFluxNdata": count[cols].astype(int),
            f"{name}_fpFluxMean": fp_mean[cols], f"{name}_fpFluxMeanErr": fp_err[cols],
            f"{name}_scienceFluxMean": sci_mean[cols],
            f"{name}_scienceFluxMeanErr": 1 / np.sqrt(np.where(sci_sw[cols] > 0, sci_sw[cols], np.nan)),
            f"{name}_psfFluxMin": fmin[cols], f"{name}_psfFluxMax": fmax[cols],
            f"{name}_psfFluxMaxSlope": max_slope[cols], f"{name}_psfFluxErrMean": err_mean[cols],
        })
    return table


# ------------------------------------------------------------------------------------------- asteroid rows
def _ss_table(o: dict, oi: np.ndarray, src: dict) -> dict:
    """ssSource columns for known asteroids, from their state and the measured position."""
    ra, dec = src["ra"], src["dec"]
    lam, beta = _ecliptic(ra, dec)
    gl, gb = _galactic(ra, dec)
    rate_ra, rate_dec = o["rate_ra"][oi], o["rate_dec"][oi]
    rate = np.hypot(rate_ra, rate_dec)
    # The observed-minus-predicted offset: mostly along track (timing), some across.
    along = o["eph_err"][oi] * np.sin(o["phase"][oi] * 7.3)
    cross = 0.3 * o["eph_err"][oi] * np.cos(o["phase"][oi] * 5.1)
    ua, ud = rate_ra / np.maximum(rate, 1e-9), rate_dec / np.maximum(rate, 1e-9)
    off_ra, off_dec = along * ua - cross * ud, along * ud + cross * ua
    table = {
        "diaSourceId": src["diaSourceId"], "ssObjectId": o["ss_id"][oi], "designation": o["designation"][oi],
        "eclLambda": lam, "eclBeta": beta, "galLon": gl, "galLat": gb,
        "elongation": o["elongation"][oi], "phaseAngle": o["phase_angle"][oi],
        "topoRange": o["delta"][oi], "topoRangeRate": o["topo_rate"][oi],
        "helioRange": o["r"][oi], "helioRangeRate": o["helio_rate"][oi],
        "ephRa": ra - off_ra / 3600 / np.cos(np.radians(dec)), "ephDec": dec - off_dec / 3600,
        "ephVmag": o["vmag"][oi], "ephRate": rate, "ephRateRa": rate_ra, "ephRateDec": rate_dec,
        "ephOffset": np.hypot(along, cross), "ephOffsetRa": off_ra, "ephOffsetDec": off_dec,
        "ephOffsetAlongTrack": along, "ephOffsetCrossTrack": cross, "diaDistanceRank": np.ones(len(oi), int),
    }
    for name in ("helio", "topo"):
        for axis in "xyz":
            table[f"{name}_{axis}"] = o[f"{name}_{axis}"][oi]
        v = np.stack([o[f"{name}_v{axis}"][oi] for axis in "xyz"])
        table.update({f"{name}_v{axis}": comp for axis, comp in zip("xyz", v)})
        table[f"{name}_vtot"] = np.linalg.norm(v, axis=0)
    return table


def _orbit_json(designation: str, q: float, e: float, i: float, node: float, argperi: float, mjd: float) -> str:
    """A reduced MPC orbit JSON (mpc_orb format): designation, cometary elements, epoch."""
    return json.dumps({"designation_data": {"unpacked_primary_provisional_designation": designation},
                       "COM": {"q": round(q, 8), "e": round(e, 8), "i": round(i, 6), "node": round(node, 6),
                               "argperi": round(argperi, 6)},
                       "epoch_data": {"epoch": round(mjd, 1), "timeform": "MJD", "timesystem": "TT"}},
                      separators=(",", ":"))


def _mpc_table(o: dict, oi: np.ndarray, mjd: float) -> dict:
    """mpc_orbits rows: the orbit the MPC would hold for each known asteroid."""
    n = len(oi)
    a, e = o["a"][oi], o["e"][oi]
    u = o["u_param"][oi].astype(float)
    rel = 10.0 ** (u / 2 - 7.5)                  # fractional element uncertainty grows with the U parameter
    period = 360.0 / o["mean_motion"][oi]
    arc = np.minimum(o["nopp"][oi] * 365.25 * 0.8, 12000.0) + 30
    created = [datetime(2015, 1, 1, tzinfo=timezone.utc) + timedelta(days=3650 * f)
               for f in o["orbit_created"][oi].tolist()]
    fitted = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=mjd - 61041.0 - 10)
    nan = np.full(n, np.nan)
    table = {
        "id": o["mpc_id"][oi], "designation": o["designation"][oi],
        "packed_primary_provisional_designation": o["packed"][oi],
        "unpacked_primary_provisional_designation": o["designation"][oi],
        "mpc_orb_jsonb": [_orbit_json(*row, mjd) for row in zip(
            o["designation"][oi].tolist(), o["q"][oi].tolist(), e.tolist(), o["i"][oi].tolist(),
            o["node"][oi].tolist(), o["argperi"][oi].tolist())],
        "created_at": created, "updated_at": [fitted] * n, "fitting_datetime": [fitted] * n,
        "orbit_type_int": np.full(n, -1), "u_param": o["u_param"][oi], "nopp": o["nopp"][oi],
        "arc_length_total": arc, "arc_length_sel": arc * 0.98, "nobs_total": o["nobs"][oi],
        "nobs_total_sel": (o["nobs"][oi] * 0.97).astype(int),
        "a": a, "q": o["q"][oi], "e": e, "i": o["i"][oi], "node": o["node"][oi], "argperi": o["argperi"][oi],
        "peri_time": o["mean_anomaly"][oi] / o["mean_motion"][oi], "mean_anomaly": o["mean_anomaly"][oi],
        "period": period, "mean_motion": o["mean_motion"][oi],
        "a_unc": a * rel, "q_unc": o["q"][oi] * rel, "e_unc": np.maximum(e, 0.01) * rel,
        "i_unc": o["i"][oi] * rel + 1e-6,
        "node_unc": 360 * rel, "argperi_unc": 360 * rel, "peri_time_unc": period * rel,
        "mean_anomaly_unc": 360 * rel, "period_unc": period * 1.5 * rel,
        "mean_motion_unc": o["mean_motion"][oi] * 1.5 * rel,
        "epoch_mjd": np.full(n, float(np.floor(mjd))), "h": o["H"][oi], "g": np.full(n, 0.15),
        "not_normalized_rms": 0.2 + 0.1 * u, "normalized_rms": 0.5 + 0.05 * u,
        "earth_moid": np.abs(o["q"][oi] - 1.0) * np.cos(np.radians(o["i"][oi])) + 0.001,
    }
    for name in ("yarkovsky", "srp", "a1", "a2", "a3", "dt"):      # non-gravitational terms: comets only
        table[name] = nan
        table[f"{name}_unc"] = nan
    return table


# ------------------------------------------------------------------------------------------- fields and visits
@dataclass
class _Field:
    """A field: its schedule (past and simulated visits, time order) and what carries to its revisit."""

    seq: int
    ra0: float
    dec0: float
    band: int                   # of the first visit
    pair_band: int              # of the revisit
    epochs: _Epochs
    next_slot: int = 0
    kept: dict | None = None


def _new_field(rng, visit: int, mjd: float | None) -> _Field:
    mjd = _visit_mjd(visit) if mjd is None else float(mjd)
    ra0, dec0 = _pointing(rng, mjd)
    band = int(rng.choice(6, p=_BAND_P))
    pair_band = band if rng.uniform() < 0.4 else (band + 1 if band < 5 else band - 1)
    fwhm, m5 = _conditions(rng, np.array([band]))
    seq = visit % 100_000
    now = _Epochs(np.array([visit], np.int64), np.array([mjd]), np.array([band]), np.array([ra0]), np.array([dec0]),
                  np.array([rng.uniform(0, 360)]), fwhm, m5, np.array([True]))
    return _Field(seq, ra0, dec0, band, pair_band, _past_visits(rng, mjd, ra0, dec0, seq).extend(now))


def _revisit_epoch(rng, field: _Field, visit: int) -> _Epochs:
    ra, dec, rot = _dither(rng, field.ra0, field.dec0, 1)
    fwhm, m5 = _conditions(rng, np.array([field.pair_band]))
    mjd = max(_visit_mjd(visit), field.epochs.mjd[-1] + 60 / 86400)
    return _Epochs(np.array([visit], np.int64), np.array([mjd]), np.array([field.pair_band]), ra, dec, rot, fwhm, m5,
                   np.array([True]))


def _history(rng, o: dict, epochs: _Epochs, now: int):
    """Object ids, prvDiaSources and prvDiaForcedSources of freshly drawn history kinds."""
    n = len(o["kind"])
    current_id = _ids(np.full(n, epochs.visit[now]), o["slot"])
    o["object_id"] = np.where(o["kind"] == SSO, -1, current_id)
    idx = np.flatnonzero(np.isin(o["kind"], _HISTORY_KINDS))
    past = epochs.take(np.arange(now))
    if not len(idx) or not len(past):
        return {}, {}
    sub = _take(o, idx)
    det, _, _ = _coverage(sub, np.arange(len(idx)), past)
    covered = det >= 0
    m = _measure(rng, sub, _flux_at(rng, sub, past.mjd, past.band), past)
    for j, e in enumerate(np.flatnonzero(past.simulated)):     # what _draw measured there, when it checked
        for key, grid in m.items():
            grid[:, e] = sub[f"sim_{key}"][:, j]
    detected = covered & (m["snr"] >= 5)
    any_det = detected.any(axis=1)
    first = np.where(any_det, np.argmax(detected, axis=1), now)
    old = sub["old"] & any_det
    created = np.where(old, -1, first)
    first_visit = np.where(first < now, past.visit[np.minimum(first, len(past) - 1)], epochs.visit[now])
    before_window = _old_visit(rng, epochs.mjd[now], int(epochs.visit[now] % 100_000), len(idx))
    first_visit = np.where(old, before_window, first_visit)
    o["object_id"][idx] = _ids(first_visit, sub["slot"])
    r, c = np.nonzero(detected)
    prv = _source_table(rng, o, idx[r], past, c, {k: v[r, c] for k, v in m.items()}, o["ra"][idx[r]], o["dec"][idx[r]])
    r, c = np.nonzero(covered & (np.arange(len(past))[None, :] >= created[:, None]) & (first < now)[:, None])
    forced = _forced_table(rng, o, idx[r], past, c, {k: v[r, c] for k, v in m.items()})
    return prv, forced


def _carry(rng, field: _Field, epochs: _Epochs, now: int):
    """Objects seen at the field's first visit that are detected again now, with their stored history."""
    kept = field.kept
    o = dict(kept["obj"])
    epoch = epochs.take(now)
    sso = np.flatnonzero(o["kind"] == SSO)
    if len(sso):                                   # asteroids have moved on along their ephemeris
        dt = epoch.mjd[0] - o["ss_t"][sso]
        o["ra"], o["dec"] = o["ra"].copy(), o["dec"].copy()
        o["ra"][sso] = (o["ra"][sso] + o["rate_ra"][sso] * dt / np.cos(np.radians(o["dec"][sso]))) % 360
        o["dec"][sso] = o["dec"][sso] + o["rate_dec"][sso] * dt
    det, _, _ = _coverage(o, np.arange(len(o["kind"])), epoch)
    m = _measure(rng, o, _flux_at(rng, o, epoch.mjd, epoch.band), epoch)
    keep = np.flatnonzero((det[:, 0] >= 0) & (m["snr"][:, 0] >= 5))
    carried = _take(o, keep)
    carried.update({f"now_{k}": v[keep, 0] for k, v in m.items()})
    remap = np.full(len(o["kind"]), -1)
    remap[keep] = np.arange(len(keep))
    tables = []
    for name in ("prv", "forced"):
        table = _take(kept[name], np.flatnonzero(remap[kept[name]["_oi"]] >= 0))
        table["_oi"] = remap[table["_oi"]]
        tables.append(_by_owner(table))
    return carried, tables[0], tables[1]


def _keep(field: _Field, o: dict, prv: dict, forced: dict, current: dict, forced_now: dict) -> None:
    """What the revisit needs: real objects and known asteroids with every source they have so far."""
    keep = np.flatnonzero(np.isin(o["kind"], _HISTORY_KINDS + (SSO,)))
    remap = np.full(len(o["kind"]), -1)
    remap[keep] = np.arange(len(keep))
    kept = {"obj": {k: v[keep] for k, v in o.items() if not k.startswith(("now_", "sim_"))}}
    for name, parts in (("prv", (prv, current)), ("forced", (forced, forced_now))):
        table = _concat([_take(t, np.flatnonzero(remap[t["_oi"]] >= 0)) for t in parts if t])
        if table:
            table["_oi"] = remap[table["_oi"]]
        kept[name] = table
    field.kept = kept


def _fresh_counts(rng, n: int, mix: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """How many new objects of each kind join the carried ones so that the visit follows the field's mix:
    kinds short of their share get it; what is left goes to the real kinds that can newly cross threshold."""
    need = np.maximum(n * mix - np.bincount(carried, minlength=len(mix)), 0)
    free = n - len(carried)
    if need.sum() < free:
        real = np.isin(np.arange(len(mix)), _HISTORY_KINDS)
        need = need + real * mix * (free - need.sum()) / mix[real].sum()
    return rng.multinomial(free, need / need.sum()) if free else np.zeros(len(mix), int)


def _observe(rng, field: _Field, n: int, with_cutouts: bool) -> list[dict]:
    """The alerts of the field's latest visit: carried objects first, the rest drawn from the field's mix."""
    epochs = field.epochs
    now = len(epochs) - 1
    forbid = np.flatnonzero(epochs.simulated[:now])
    carried, carried_prv, carried_forced = _carry(rng, field, epochs, now) if field.kept else ({}, {}, {})
    n_carried = len(carried.get("kind", ()))
    if n_carried > n:
        carried = _take(carried, np.arange(n))
        carried_prv, carried_forced = ({k: v[t["_oi"] < n] for k, v in t.items()}
                                       for t in (carried_prv, carried_forced))
        n_carried = n
    counts = _fresh_counts(rng, n, _mix(field.ra0, field.dec0), carried.get("kind", np.zeros(0, int)))
    parts = [_draw(rng, kind, int(count), epochs, now, forbid) for kind, count in enumerate(counts) if count]
    short = n - n_carried - sum(len(p["kind"]) for p in parts)
    if short:
        parts.append(_draw(rng, BOGUS, short, epochs, now, forbid))
    fresh = _concat(parts)
    if fresh:
        fresh = _take(fresh, rng.permutation(len(fresh["kind"])))
        fresh["slot"] = field.next_slot + np.arange(len(fresh["kind"]))
        field.next_slot += len(fresh["kind"])
        prv, forced = _history(rng, fresh, epochs, now)
        for table in (prv, forced):
            if table:
                table["_oi"] = table["_oi"] + n_carried
    else:
        prv, forced = {}, {}
    o = _concat([carried, fresh])
    if not o:
        return []
    m = {k[4:]: v for k, v in o.items() if k.startswith("now_")}
    current = _source_table(rng, o, np.arange(n), epochs, np.full(n, now), m, o["ra"], o["dec"])
    prv, forced = _concat([carried_prv, prv]), _concat([carried_forced, forced])
    if field.kept is None:
        # Forced photometry of this visit joins the history the revisit will see (asteroids have no diaObject).
        objects = np.flatnonzero(o["kind"] != SSO)
        forced_now = _forced_table(rng, o, objects, epochs, np.full(len(objects), now),
                                   {k: v[objects] for k, v in m.items()})
        _keep(field, o, prv, forced, current, forced_now)
    else:
        field.kept = None
    return _assemble(rng, o, epochs.take(now), current, prv, forced, field, with_cutouts)


# ------------------------------------------------------------------------------------------- cutouts
def _local_cd(ra, dec, epoch: _Epochs) -> np.ndarray:
    """Local linear WCS (k, 2, 2) [deg/px] at each source: the Jacobian of the visit's projection there."""
    fx, fy = _sky_to_focal(ra, dec, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
    cols = []
    for dx, dy in ((1.0, 0.0), (0.0, 1.0)):
        r2, d2 = _focal_to_sky(fx + dx, fy + dy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
        r1, d1 = _focal_to_sky(fx - dx, fy - dy, epoch.ra0[0], epoch.dec0[0], epoch.rot[0])
        xi2, eta2 = _to_plane(r2, d2, ra, dec)
        xi1, eta1 = _to_plane(r1, d1, ra, dec)
        cols.append(np.stack([(xi2 - xi1) / 2, (eta2 - eta1) / 2], axis=1))
    return np.stack(cols, axis=2)


def _cutouts(rng, o: dict, cur: dict, epoch: _Epochs, writer: cut.CutoutWriter):
    """Difference, science and template cutouts of the current sources, drawn to match their catalogue values."""
    side = cut.cutout_side(cur["bboxSize"])
    x, y = cur["x"], cur["y"]
    minx, miny = np.rint(x).astype(int) - side // 2, np.rint(y).astype(int) - side // 2
    cd = _local_cd(cur["ra"], cur["dec"], epoch)
    inv = np.linalg.inv(cd * 3600)                          # arcsec (east, north) -> pixels
    kind, sub = o["kind"], o["sub"]
    moving = np.isin(kind, (SSO, MOVER))
    trail_px = cur["trailLength"] / PIXEL_SCALE
    shape = np.select([(kind == BOGUS) & (sub == _CR), (kind == BOGUS) & (sub == _DIPOLE),
                       (kind == BOGUS) & (sub == _STREAK) | moving & (trail_px > 1.5)],
                      [cut.SPIKE, cut.DIPOLE, cut.TRAIL], cut.POINT)
    bearing = np.radians(np.where(shape == cut.DIPOLE, cur["dipoleAngle"], cur["trailAngle"]))
    direction = np.einsum("kij,kj->ki", inv, np.stack([np.sin(bearing), np.cos(bearing)], axis=1))
    hx, hy = np.einsum("kij,kj->ki", inv, np.nan_to_num(np.column_stack([o["host_dx"], o["host_dy"]]))).T
    host_flux = np.nan_to_num(_flux(o["host_mag"] + _HOST_COLOR * _COLOR_K[epoch.band[0]]))
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
    optics = cut.Optics(sigma=float(epoch.sigma_px[0]), sigma_template=_TEMPLATE_SIGMA_PX,
                        sky_var=float(epoch.flux_err[0] ** 2 / epoch.nea[0]),
                        sky_var_template=float(_TEMPLATE_ERR[band] ** 2 / _nea(_TEMPLATE_SIGMA_PX)),
                        gain=float(epoch.gain[0]), gain_template=float(epoch.gain[0] / _TEMPLATE_COADD))
    return cut.render(rng, scenes, optics, writer)


# ------------------------------------------------------------------------------------------- assembly
def _split(records: list[dict], owner: np.ndarray, n: int) -> list[list[dict] | None]:
    """Rows grouped by owning alert (rows already sorted by owner, then time); None for no rows."""
    bounds = np.searchsorted(owner, np.arange(n + 1)).tolist()
    return [records[a:b] or None for a, b in zip(bounds[:-1], bounds[1:])]


def _by_owner(table: dict) -> dict:
    """Rows ordered by owning alert, then time."""
    if not table:
        return table
    return _take(table, np.lexsort((table["midpointMjdTai"], table["_oi"])))


def _assemble(rng, o: dict, epoch: _Epochs, cur: dict, prv: dict, forced: dict, field: _Field,
              with_cutouts: bool) -> list[dict]:
    n = len(o["kind"])
    needed = ("_oi", "_band", "psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "midpointMjdTai", "ra", "dec",
              "raErr")
    detections = _concat([{k: t[k] for k in needed} for t in (prv, cur) if t])
    obj = _object_table(n, o["object_id"], detections, forced or _empty_forced(), cur)
    dia_sources = _records({**cur, **_SOURCE_CONSTANTS}, DIA_SOURCE, n)
    prv_lists = _split(_records({**prv, **_SOURCE_CONSTANTS}, DIA_SOURCE, len(prv["_oi"])), prv["_oi"], n) \
        if prv else [None] * n
    forced_lists = _split(_records({**forced, "timeWithdrawnMjdTai": None}, DIA_FORCED_SOURCE, len(forced["_oi"])),
                          forced["_oi"], n) if forced else [None] * n
    objects = _records(obj, DIA_OBJECT, n)
    known = np.flatnonzero(o["kind"] == SSO)
    ss_sources, orbits = [None] * n, [None] * n
    if len(known):
        src = _take(cur, known)
        for i, ss, mpc in zip(known.tolist(), _records(_ss_table(o, known, src), SS_SOURCE, len(known)),
                              _records(_mpc_table(o, known, float(epoch.mjd[0])), MPC_ORBITS, len(known))):
            ss_sources[i], orbits[i] = ss, mpc
    if with_cutouts:
        diff, sci, tmpl = _cutouts(rng, o, cur, epoch, _WRITER)
    else:
        diff = sci = tmpl = [None] * n
    gl, gb = _galactic(field.ra0, field.dec0)
    reason = f"pairs_{BANDS[field.band]}{BANDS[field.pair_band]}_33.0"          # scheduler names, as in RTN-097
    target = "lowdust" if abs(gb) > 15 else "galactic_plane"
    alerts = []
    for i in np.lexsort((o["slot"], cur["detector"])).tolist():
        is_sso = o["kind"][i] == SSO
        alerts.append({
            "diaSourceId": dia_sources[i]["diaSourceId"], "observation_reason": reason, "target_name": target,
            "diaSource": dia_sources[i], "prvDiaSources": prv_lists[i], "prvDiaForcedSources": forced_lists[i],
            "diaObject": None if is_sso else objects[i], "ssSource": ss_sources[i], "mpc_orbits": orbits[i],
            "cutoutDifference": diff[i], "cutoutScience": sci[i], "cutoutTemplate": tmpl[i],
        })
    return alerts


def _empty_forced() -> dict:
    return {"_oi": np.zeros(0, int), "_band": np.zeros(0, int), "psfFlux": np.zeros(0), "psfFluxErr": np.ones(0)}


# ------------------------------------------------------------------------------------------- public API
def _check(visit: int, n_alerts: int, seed: int) -> None:
    if not 0 <= visit < 2 ** (63 - _ID_BITS):
        raise ValueError(f"visit must be in [0, 2**{63 - _ID_BITS}) to keep diaSourceIds in 64 bits, got {visit}")
    if not 0 <= n_alerts < 2 ** (_ID_BITS - 2):
        raise ValueError(f"n_alerts must be in [0, {2 ** (_ID_BITS - 2)}), got {n_alerts}")
    if seed < 0:
        raise ValueError("seed must be >= 0")


_WRITER = cut.CutoutWriter()


@contextmanager
def _bulk():
    """Pause the cyclic GC while ~10^6 acyclic dicts are built: its passes would cost ~15% for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def simulate_visit(visit: int, n_alerts: int, seed: int, *, cutouts: bool = True,
                   mjd: float | None = None) -> list[dict]:
    """One visit's alerts as plain dicts valid under the lsst.v11_1.alert Avro schema (fastavro-serialisable).

    The same (visit, n_alerts, seed, mjd) always gives the same alerts; this is also the first visit that
    simulate_visits makes of the field of this visit number. mjd defaults to the time the visit number implies.
    """
    _check(visit, n_alerts, seed)
    rng = np.random.default_rng([seed, visit])
    with _bulk():
        return _observe(rng, _new_field(rng, visit, mjd), n_alerts, cutouts) if n_alerts else []


def simulate_visits(n_visits: int, alerts_per_visit: int, seed: int, *, cutouts: bool = True,
                    first_visit: int = DEFAULT_FIRST_VISIT) -> Iterator[tuple[int, list[dict]]]:
    """Consecutive visits (visit id, alerts), deterministic for the seed.

    Visits come in blobs of BLOB new fields followed by one revisit of each in another band, as the
    scheduler takes pairs: real objects and known asteroids detected again carry the first visit's source
    in their history, asteroids having moved on.
    """
    _check(first_visit + max(n_visits - 1, 0), alerts_per_visit, seed)
    end = first_visit + n_visits
    for start in range(first_visit, end, 2 * BLOB):
        fields = []
        for visit in range(start, min(start + BLOB, end)):
            rng = np.random.default_rng([seed, visit])
            field = _new_field(rng, visit, None)
            fields.append(field)
            with _bulk():
                alerts = _observe(rng, field, alerts_per_visit, cutouts) if alerts_per_visit else []
            yield visit, alerts
        for field, visit in zip(fields, range(start + BLOB, min(start + 2 * BLOB, end))):
            rng = np.random.default_rng([seed, visit])
            field.epochs = field.epochs.extend(_revisit_epoch(rng, field, visit))
            with _bulk():
                alerts = _observe(rng, field, alerts_per_visit, cutouts) if alerts_per_visit else []
            yield visit, alerts
