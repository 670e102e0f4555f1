"""Fields and their schedules: where a field is, its visits in the 12 months before now (pairs ~33 min apart,
rolling cadence, season gaps, dithers) and the revisit in another band that pairs its first visit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afs.alerts.simulation.clock import day_obs_of, visit_mjd
from afs.alerts.simulation.epochs import Epochs, observing_conditions
from afs.alerts.simulation.sky import SITE_LAT, from_plane, local_sidereal_time

_BAND_P = np.array([0.06, 0.09, 0.22, 0.22, 0.20, 0.21])     # survey band mix


@dataclass
class Field:
    """A field: its schedule (past and simulated visits, time order) and what carries to its revisit."""

    ra0: float
    dec0: float
    band: int                   # of the first visit
    pair_band: int              # of the revisit
    epochs: Epochs
    next_slot: int = 0
    kept: dict | None = None


def new_field(rng, visit: int, mjd: float | None) -> Field:
    mjd = visit_mjd(visit) if mjd is None else float(mjd)
    ra0, dec0 = _pointing(rng, mjd)
    band = int(rng.choice(6, p=_BAND_P))
    pair_band = band if rng.uniform() < 0.4 else (band + 1 if band < 5 else band - 1)
    fwhm, m5 = observing_conditions(rng, np.array([band]))
    seq = visit % 100_000
    now = Epochs(np.array([visit], np.int64), np.array([mjd]), np.array([band]), np.array([ra0]), np.array([dec0]),
                 np.array([rng.uniform(0, 360)]), fwhm, m5, np.array([True]))
    return Field(ra0, dec0, band, pair_band, _past_visits(rng, mjd, ra0, dec0, seq).extend(now))


def revisit_epoch(rng, field: Field, visit: int) -> Epochs:
    ra, dec, rot = _dither(rng, field.ra0, field.dec0, 1)
    fwhm, m5 = observing_conditions(rng, np.array([field.pair_band]))
    mjd = max(visit_mjd(visit), field.epochs.mjd[-1] + 60 / 86400)
    return Epochs(np.array([visit], np.int64), np.array([mjd]), np.array([field.pair_band]), ra, dec, rot, fwhm, m5,
                  np.array([True]))


def _pointing(rng, mjd: float) -> tuple[float, float]:
    """A field within the survey footprint (dec -90..+30), at airmass < 1.35 at this time."""
    lst, lat = np.radians(local_sidereal_time(mjd)), np.radians(SITE_LAT)
    ha = np.radians(rng.uniform(-45, 45, 256))
    dec = np.arcsin(rng.uniform(-1.0, np.sin(np.radians(30.0)), 256))
    alt = np.arcsin(np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha))
    first = int(np.argmax(alt > np.radians(48)))
    return float(np.degrees(lst - ha[first]) % 360.0), float(np.degrees(dec[first]))


def _dither(rng, ra0: float, dec0: float, n: int):
    """Pointings within 0.2 deg of the field centre, with a random rotation each."""
    r, phi = 0.2 * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    ra, dec = from_plane(r * np.cos(phi), r * np.sin(phi), ra0, dec0)
    return ra, dec, rng.uniform(0, 360, n)


def _past_visits(rng, mjd: float, ra0: float, dec0: float, seq: int) -> Epochs:
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
    fwhm, m5 = observing_conditions(rng, band)
    ra, dec, rot = _dither(rng, ra0, dec0, len(times))
    visit = day_obs_of(times) * 100_000 + 50_000 + 2 * (seq % 20_000) + second
    return Epochs(visit.astype(np.int64), times, band.astype(np.int64), ra, dec, rot, fwhm, m5,
                  np.zeros(len(times), bool))


def old_visit_ids(rng, mjd: float, seq: int, n: int) -> np.ndarray:
    """Visit ids of first detections made before the 12-month window."""
    return day_obs_of(mjd - 366 - rng.uniform(0, 700, n)) * 100_000 + 50_000 + 2 * (seq % 20_000)
