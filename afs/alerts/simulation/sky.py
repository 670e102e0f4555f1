"""Celestial geometry: unit vectors, galactic and ecliptic frames, the Sun, sidereal time at Cerro Pachon and
the gnomonic (TAN) projection."""

from __future__ import annotations

import numpy as np

_SITE_LON, SITE_LAT = -70.7494, -30.2444          # Rubin on Cerro Pachon [deg]
_OBLIQUITY = np.radians(23.4392911)
_TO_GALACTIC = np.array([[-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
                         [0.4941094278755837, -0.4448296299600112, 0.7469822444972189],
                         [-0.8676661490190047, -0.1980763734312015, 0.4559837761750669]])
TO_ECLIPTIC = np.array([[1, 0, 0], [0, np.cos(_OBLIQUITY), np.sin(_OBLIQUITY)],
                        [0, -np.sin(_OBLIQUITY), np.cos(_OBLIQUITY)]])
ECLIPTIC_POLE = TO_ECLIPTIC[2]          # ecliptic north pole in equatorial coordinates


def unit_vector(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2] / np.linalg.norm(v, axis=-1), -1, 1)))
    return ra, dec


def galactic(ra, dec):
    return _radec(unit_vector(ra, dec) @ _TO_GALACTIC.T)


def ecliptic(ra, dec):
    return _radec(unit_vector(ra, dec) @ TO_ECLIPTIC.T)


def sun_direction(mjd: float) -> tuple[np.ndarray, float]:
    """Geocentric unit vector (equatorial) and distance [AU] of the Sun (Astronomical Almanac, ~0.01 deg)."""
    n = mjd - 51544.5
    g = np.radians(357.528 + 0.9856003 * n)
    lam = np.radians(280.460 + 0.9856474 * n + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    ecl = np.array([np.cos(lam), np.sin(lam), 0.0])
    return TO_ECLIPTIC.T @ ecl, 1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2 * g)


def local_sidereal_time(mjd: float) -> float:
    return (280.46061837 + 360.98564736629 * (mjd - 51544.5) + _SITE_LON) % 360.0


def to_plane(ra, dec, ra0, dec0):
    """Gnomonic standard coordinates (xi east, eta north) in degrees about (ra0, dec0)."""
    a, d, a0, d0 = map(np.radians, (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def from_plane(xi, eta, ra0, dec0):
    x, y, a0, d0 = np.radians(xi), np.radians(eta), np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    safe = np.where(rho == 0, 1.0, rho)
    dec = np.arcsin(np.cos(c) * np.sin(d0) + y * np.sin(c) * np.cos(d0) / safe)
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)
