"""Visit numbers and times: LSSTCam numbers visits day_obs * 100000 + seq; a night starts at 23:30 UTC on
day_obs and each visit takes 37 s."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

EXPOSURE = 30.0               # s
DEFAULT_FIRST_VISIT = 2026_04_01_00001   # day_obs * 100000 + seq, as LSSTCam numbers visits
_MJD_EPOCH = datetime(1858, 11, 17)


def _mjd_of(day: datetime) -> float:
    return (day - _MJD_EPOCH).total_seconds() / 86400.0


def day_obs_of(mjd: np.ndarray) -> np.ndarray:
    """Rubin day_obs (YYYYMMDD in UTC-12h) of each time."""
    return np.array([int((_MJD_EPOCH + timedelta(days=float(m) - 0.5)).strftime("%Y%m%d")) for m in np.atleast_1d(mjd)])


def visit_mjd(visit: int) -> float:
    """Mid-exposure time of a visit numbered day_obs * 100000 + seq: 23:30 UTC on day_obs plus 37 s a visit.

    Numbers whose day_obs is no date count nights from DEFAULT_FIRST_VISIT's night instead.
    """
    day_obs, seq = divmod(visit, 100_000)
    try:
        night = _mjd_of(datetime.strptime(str(day_obs), "%Y%m%d"))
    except ValueError:
        night = _mjd_of(datetime.strptime(str(DEFAULT_FIRST_VISIT // 100_000), "%Y%m%d")) + day_obs
    return night + 23.5 / 24 + (seq * 37.0 + EXPOSURE / 2) / 86400.0
