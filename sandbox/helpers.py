"""Pure functions filters import as `helpers` (`import helpers`, `from helpers import snr`).

Every helper takes plain numbers or an alert, returns frozen values (numbers,
strings, tuples, read-only mappings) and raises only a fresh ValueError or
TypeError whose message is plain text: nothing a filter receives from here
leads back to a host object. Missing values (None) and NaN never raise; a
result that cannot be computed is NaN.

Only the names in __all__ are visible to filters. ppdb_query goes through the
worker's channel to the parent, never a connection of its own: the service checks
and answers it under a per-filter, per-alert budget.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any, TypeVar

from .freeze import freeze
from .protocol import MAX_QUERY_PARAMS, MAX_QUERY_TEXT

__all__ = [
    "flux_to_mag", "mag_err", "snr", "angular_separation", "galactic_latitude",
    "light_curve", "mean", "median", "stdev", "slope", "rise_rate", "ppdb_query",
]

AB_ZEROPOINT_NJY = 31.4  # AB magnitude of a 1 nJy source
_MAG_PER_LN_FLUX = 2.5 / math.log(10.0)
# The north Galactic pole and the Galactic centre in ICRS (as astropy defines them).
_NGP_RA, _NGP_DEC = math.radians(192.85947789477606), math.radians(27.128252414968028)
_LIGHT_CURVE_CACHE_LIMIT = 50_000

_F = TypeVar("_F", bound=Callable[..., Any])
_Alert = Any  # a read-only mapping (or a dict a filter built itself)


def _sanitised(fn: _F) -> _F:
    """Turn any failure into a fresh ValueError/TypeError carrying only text.

    The new exception is raised outside the except block, so it has no
    __context__ pointing at the original (and its frames) either.
    """
    name = fn.__name__

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes plain text
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            message = f"{name}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        raise kind(message)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def _number(value: object, what: str) -> float:
    """A float from an int/float; NaN for None. Anything else is a TypeError."""
    if value is None:
        return math.nan
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"{what} must be a number or None, not {type(value).__name__}")


def _valid_numbers(values: Iterable[object], what: str) -> list[float]:
    numbers = (_number(v, what) for v in values)
    return [x for x in numbers if not math.isnan(x)]


def _field(record: object, key: str) -> Any:
    if type(record) not in (MappingProxyType, dict):
        raise TypeError(f"expected an alert record (a mapping), not {type(record).__name__}")
    return record.get(key)  # type: ignore[attr-defined]


@_sanitised
def flux_to_mag(flux_njy: float | None) -> float:
    """AB magnitude of a flux in nJy: 31.4 - 2.5 log10(flux); NaN if None or <= 0."""
    flux = _number(flux_njy, "flux")
    if not flux > 0 or math.isinf(flux):
        return math.nan
    return AB_ZEROPOINT_NJY - 2.5 * math.log10(flux)


@_sanitised
def mag_err(flux: float | None, flux_err: float | None) -> float:
    """Magnitude error from a flux and its error: 1.0857 * err / flux; NaN if invalid."""
    f, e = _number(flux, "flux"), _number(flux_err, "flux_err")
    if not f > 0 or not e >= 0 or math.isinf(f) or math.isinf(e):
        return math.nan
    return _MAG_PER_LN_FLUX * e / f


@_sanitised
def snr(flux: float | None, flux_err: float | None) -> float:
    """Signal-to-noise ratio |flux| / err; NaN if either is missing or err <= 0."""
    f, e = _number(flux, "flux"), _number(flux_err, "flux_err")
    if math.isnan(f) or not e > 0:
        return math.nan
    return abs(f) / e


@_sanitised
def angular_separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in arcsec between two positions in degrees (Vincenty)."""
    a1, d1, a2, d2 = (math.radians(_number(v, "coordinate")) for v in (ra1, dec1, ra2, dec2))
    delta = a2 - a1
    sin_d1, cos_d1, sin_d2, cos_d2 = math.sin(d1), math.cos(d1), math.sin(d2), math.cos(d2)
    num1 = cos_d2 * math.sin(delta)
    num2 = cos_d1 * sin_d2 - sin_d1 * cos_d2 * math.cos(delta)
    denominator = sin_d1 * sin_d2 + cos_d1 * cos_d2 * math.cos(delta)
    return math.degrees(math.atan2(math.hypot(num1, num2), denominator)) * 3600.0


@_sanitised
def galactic_latitude(ra: float, dec: float) -> float:
    """Galactic latitude b in degrees of an ICRS position in degrees."""
    a, d = math.radians(_number(ra, "ra")), math.radians(_number(dec, "dec"))
    sin_b = (math.sin(d) * math.sin(_NGP_DEC)
             + math.cos(d) * math.cos(_NGP_DEC) * math.cos(a - _NGP_RA))
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_b))))


# Light curves are shared by every filter that asks for the same frozen alert in a
# batch. Entries hold the alert itself, so an id cannot be reused while cached;
# only read-only alerts are cached, so a cached curve can never go stale.
_light_curves: dict[tuple[int, str | None, bool], tuple[object, tuple[MappingProxyType[str, Any], ...]]] = {}


def reset_caches() -> None:
    """Forget cached light curves; the worker calls this between batches."""
    _light_curves.clear()


def _point(record: object) -> MappingProxyType[str, Any] | None:
    mjd = _field(record, "midpointMjdTai")
    if mjd is None:
        return None
    return MappingProxyType({
        "mjd": mjd,
        "band": _field(record, "band"),
        "flux": _field(record, "psfFlux"),
        "flux_err": _field(record, "psfFluxErr"),
    })


def _build_light_curve(alert: _Alert, band: str | None, forced: bool) -> tuple[MappingProxyType[str, Any], ...]:
    if forced:
        records = list(_field(alert, "prvDiaForcedSources") or ())
    else:
        records = list(_field(alert, "prvDiaSources") or ())
        current = _field(alert, "diaSource")
        if current is not None:
            seen = {_field(r, "diaSourceId") for r in records}
            if _field(current, "diaSourceId") not in seen or _field(current, "diaSourceId") is None:
                records.append(current)
    points = []
    for record in records:
        if band is not None and _field(record, "band") != band:
            continue
        point = _point(record)
        if point is not None:
            points.append(point)
    points.sort(key=lambda p: p["mjd"])
    return tuple(points)


@_sanitised
def light_curve(alert: _Alert, band: str | None = None, forced: bool = False) -> tuple[MappingProxyType[str, Any], ...]:
    """Points {"mjd", "band", "flux", "flux_err"} sorted by MJD, as a tuple.

    Detections are prvDiaSources plus the triggering diaSource (psfFlux,
    psfFluxErr); with forced=True, the prvDiaForcedSources instead. A filter only
    sees the alert keys it lists in READS, so list "prvDiaSources" (or
    "prvDiaForcedSources") there to get history.
    """
    if band is not None and type(band) is not str:
        raise TypeError(f"band must be a string such as 'r' or None, not {type(band).__name__}")
    forced = bool(forced)
    if type(alert) is not MappingProxyType:
        return _build_light_curve(alert, band, forced)
    key = (id(alert), band, forced)
    cached = _light_curves.get(key)
    if cached is not None and cached[0] is alert:
        return cached[1]
    points = _build_light_curve(alert, band, forced)
    if len(_light_curves) >= _LIGHT_CURVE_CACHE_LIMIT:
        _light_curves.clear()
    _light_curves[key] = (alert, points)
    return points


@_sanitised
def mean(xs: Iterable[float | None]) -> float:
    """Arithmetic mean, ignoring None and NaN; NaN if nothing is left."""
    values = _valid_numbers(xs, "value")
    return sum(values) / len(values) if values else math.nan


@_sanitised
def median(xs: Iterable[float | None]) -> float:
    """Median, ignoring None and NaN; NaN if nothing is left."""
    values = sorted(_valid_numbers(xs, "value"))
    n = len(values)
    if n == 0:
        return math.nan
    middle = n // 2
    return values[middle] if n % 2 else (values[middle - 1] + values[middle]) / 2.0


@_sanitised
def stdev(xs: Iterable[float | None]) -> float:
    """Sample standard deviation (n - 1), ignoring None and NaN; NaN if fewer than 2."""
    values = _valid_numbers(xs, "value")
    n = len(values)
    if n < 2:
        return math.nan
    centre = sum(values) / n
    return math.sqrt(sum((x - centre) ** 2 for x in values) / (n - 1))


def _least_squares_slope(pairs: list[tuple[float, float]]) -> float:
    n = len(pairs)
    if n < 2:
        return math.nan
    mean_x = sum(x for x, _ in pairs) / n
    mean_y = sum(y for _, y in pairs) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in pairs)
    if sxx == 0:
        return math.nan
    return sum((x - mean_x) * (y - mean_y) for x, y in pairs) / sxx


@_sanitised
def slope(xs: Iterable[float | None], ys: Iterable[float | None]) -> float:
    """Least-squares slope of ys against xs over pairs where both are valid; NaN if < 2."""
    xs_list, ys_list = list(xs), list(ys)
    if len(xs_list) != len(ys_list):
        raise ValueError(f"xs and ys differ in length ({len(xs_list)} and {len(ys_list)})")
    pairs = [(x, y) for x, y in zip((_number(v, "x") for v in xs_list),
                                    (_number(v, "y") for v in ys_list))
             if not (math.isnan(x) or math.isnan(y))]
    return _least_squares_slope(pairs)


@_sanitised
def rise_rate(alert: _Alert, band: str | None = None, days: float | None = None) -> float:
    """Slope of magnitude against MJD (mag/day) over detections; negative = brightening.

    Only detections within `days` of the latest one count when days is given.
    Detections without a positive flux are skipped; NaN if fewer than 2 remain.
    """
    window = None if days is None else _number(days, "days")
    pairs = []
    for point in light_curve(alert, band):
        magnitude = flux_to_mag(point["flux"])
        if not math.isnan(magnitude):
            pairs.append((float(point["mjd"]), magnitude))
    if window is not None and pairs:
        latest = max(mjd for mjd, _ in pairs)
        pairs = [(mjd, m) for mjd, m in pairs if mjd >= latest - window]
    return _least_squares_slope(pairs)


# Set by the worker for the length of a batch: (kind, params) -> {"rows": ...} or {"error": text}.
_query_channel: Callable[[str, dict[str, Any]], Any] | None = None
_QUERY_PARAM_TYPES = (str, int, float, bool, type(None))


def set_query_channel(channel: Callable[[str, dict[str, Any]], Any] | None) -> None:
    global _query_channel
    _query_channel = channel


@_sanitised
def ppdb_query(kind: str, **params: Any) -> tuple[MappingProxyType[str, Any], ...]:
    """Rows from the service's PPDB mirror as of this alert, oldest or nearest first:
    ppdb_query("history", diaObjectId=..., days=30), ppdb_query("neighbours", ra=..., dec=...,
    radius_arcsec=10), also "forced_history" and "recent_detections" (the NEEDS kinds).
    A few calls and rows per alert at most; prefer NEEDS, fetched for the whole batch at once."""
    if _query_channel is None:
        raise ValueError("PPDB queries are not available here")
    if not isinstance(kind, str):
        raise TypeError("kind must be a string")
    if len(kind) > MAX_QUERY_TEXT or len(params) > MAX_QUERY_PARAMS:
        raise ValueError("unknown query kind or too many parameters")
    plain: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
            value = list(value)
        elif not isinstance(value, _QUERY_PARAM_TYPES):
            raise TypeError(f"{name} must be a number, a string or a tuple of strings")
        values = value if isinstance(value, list) else [value]
        if len(values) > MAX_QUERY_PARAMS or any(isinstance(v, str) and len(v) > MAX_QUERY_TEXT for v in values):
            raise ValueError(f"{name}: at most {MAX_QUERY_PARAMS} values of at most {MAX_QUERY_TEXT} characters")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{name} must be finite")
        plain[name] = value
    answer = _query_channel(kind, plain)
    if "error" in answer:
        raise ValueError(str(answer["error"]))
    return freeze(list(answer["rows"]))
