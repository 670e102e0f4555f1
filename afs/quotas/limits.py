"""Quota kinds, a user's limits (admin overrides over the AFS_QUOTA_* defaults) and their periods.

Counted kinds and their periods:

- ``visit_alerts``: full alerts per visit (the fetched alert's ``diaSource.visit``; DMS-REQ-0343's 20). A
  visit's counter starts at its first fetch and lives ``AFS_QUOTA_VISIT_WINDOW_S`` (a day), then starts again.
- ``alerts``: full alerts per UTC day (single fetches and bulk jobs).
- ``cutout_bytes``: bytes of cutouts served per UTC day (FITS, PNG or multi-resolution, as sent).
- ``ppdb_queries``: PPDB queries per UTC day.

And ``requests``: a token bucket per user on the data endpoints, ``requests_per_second`` refilling up to
``burst``. Every period ends at a known instant, which is what Retry-After and RateLimit-Reset report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from afs.config import Settings

VISIT, DAY = "visit", "day"
PERIODS = {"visit_alerts": VISIT, "alerts": DAY, "cutout_bytes": DAY, "ppdb_queries": DAY}
REQUESTS = "requests"
# What an admin can set: every counted kind, and the bucket's rate and size.
SETTABLE = (*PERIODS, "requests_per_second", "burst")


@dataclass(frozen=True)
class Limits:
    """One user's limits; ``overridden`` names those an admin set (the rest are the defaults)."""

    visit_alerts: int
    alerts: int
    cutout_bytes: int
    ppdb_queries: int
    requests_per_second: float
    burst: int
    overridden: frozenset[str] = field(default_factory=frozenset)

    def of(self, kind: str) -> int:
        return getattr(self, kind)


def defaults(settings: Settings) -> dict[str, float]:
    return {"visit_alerts": settings.quota_visit_alerts, "alerts": settings.quota_alerts_per_day,
            "cutout_bytes": settings.quota_cutout_bytes_per_day, "ppdb_queries": settings.quota_ppdb_queries_per_day,
            "requests_per_second": settings.quota_requests_per_second, "burst": settings.quota_request_burst}


def resolve(settings: Settings, overrides: dict[str, float]) -> Limits:
    values = defaults(settings) | overrides
    return Limits(**{k: (float(v) if k == "requests_per_second" else int(v)) for k, v in values.items()},
                  overridden=frozenset(overrides))


def next_midnight(now: float) -> float:
    """Epoch seconds of the next 00:00 UTC after ``now``: when the daily quotas start again."""
    today = datetime.fromtimestamp(now, UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp()


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def period_of(kind: str, key: int | None) -> str:
    """The counter's key within a kind: the visit for ``visit_alerts``, nothing for the daily kinds."""
    if PERIODS[kind] == VISIT:
        if key is None:
            raise ValueError("visit_alerts needs the visit as its key")
        return str(key)
    return ""


def reset_for(kind: str, now: float, visit_window_s: float) -> float:
    """When a counter of this kind created (or restarted) at ``now`` starts again."""
    return now + visit_window_s if PERIODS[kind] == VISIT else next_midnight(now)


def window_s(kind: str, visit_window_s: float) -> float:
    """How long a period of this kind is (RateLimit-Policy's ``w``)."""
    return visit_window_s if PERIODS[kind] == VISIT else 86_400.0
