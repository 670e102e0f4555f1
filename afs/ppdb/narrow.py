"""The narrow query helper: the few query shapes a filter may run while it looks at one alert.

A filter's prefetched needs cover the common case in one batch query; this is for the rest (the history of
a neighbour it just found, say). Each call is one of the shapes below with parameters checked by type and
range and bound, never spliced, and runs under a row cap and a time limit. ``Budget`` keeps one filter's
allowance for one alert (calls, rows, seconds) on the trusted side of the sandbox channel, and pins every
call to the alert's time: a filter sees the mirror as it was when its alert was observed.

The shapes are the per-alert forms of the prefetch kinds, so the prefetch tests compare against them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from afs.ppdb import sky
from afs.ppdb.needs import KINDS, SEPARATION, SPATIAL, NeedsError, validate_needs
from afs.ppdb.prefetch import Rows, order_columns
from afs.ppdb.queries import QueryError, as_float, as_int, cone_condition, time_limit
from afs.ppdb.schema import HEALPIX_COLUMN, quote

SHAPES = {  # shape -> (required parameters, optional parameters)
    "history": (("diaObjectId", "before_mjd"), ("days", "columns")),
    "forced_history": (("diaObjectId", "before_mjd"), ("days", "columns")),
    "neighbours": (("ra", "dec", "before_mjd"), ("radius_arcsec", "exclude_diaObjectId", "columns")),
    "recent_detections": (("ra", "dec", "before_mjd"), ("nights", "radius_arcsec", "columns")),
}


class NarrowLimitExceeded(QueryError):
    """A filter used up its calls, rows or time for this alert."""


@dataclass(frozen=True)
class NarrowLimits:
    max_calls: int = 5
    max_rows: int = 200
    max_seconds: float = 0.05


def execute(con: duckdb.DuckDBPyConnection, shape: Any, params: Mapping[str, Any], *, max_rows: int,
            timeout_s: float) -> Rows:
    """Run one narrow query: rows in the kind's order (the most recent ones when a history is cut at
    ``max_rows``), as a tuple of dicts of scalars."""
    if shape not in SHAPES:
        raise QueryError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if not isinstance(params, Mapping):
        raise QueryError("params must be a dict")
    required, optional = SHAPES[shape]
    unknown = set(params) - set(required) - set(optional)
    missing = [p for p in required if p not in params]
    if unknown or missing:
        raise QueryError(f"{shape}: unknown parameter {sorted(map(str, unknown))[0]!r}" if unknown
                         else f"{shape}: missing parameter {missing[0]!r}")
    options = {k: params[k] for k in ("days", "nights", "radius_arcsec", "columns") if k in params}
    try:
        need = validate_needs({shape: options})[shape]
    except NeedsError as error:
        raise QueryError(str(error)) from None
    bound: dict[str, Any] = {"before": as_float("before_mjd", params["before_mjd"]), "limit": max_rows}
    table = quote(KINDS[shape])
    order = [quote(c) for c in order_columns(shape)]
    conditions = [] if shape == "neighbours" else ['"midpointMjdTai" < $before']
    window = need.days if need.days is not None else need.nights
    if window is not None:
        bound["since"] = bound["before"] - window
        conditions.append('"midpointMjdTai" >= $since')
    columns = list(need.columns)
    # The indexed predicate alone in a materialized CTE: under ORDER BY ... LIMIT DuckDB would scan instead.
    if shape in SPATIAL:
        ra, dec = as_float("ra", params["ra"], 0.0, 360.0), as_float("dec", params["dec"], -90.0, 90.0)
        bound.update(ra=ra, dec=dec, radius=need.radius_arcsec)
        near = cone_condition(ra, dec, need.radius_arcsec or 0.0, quote(HEALPIX_COLUMN), bound)
        conditions.append(f"{SEPARATION} <= $radius")
        if shape == "neighbours":
            conditions.append('("firstDiaSourceMjdTai" IS NULL OR "firstDiaSourceMjdTai" < $before)')
            if params.get("exclude_diaObjectId") is not None:
                bound["exclude"] = as_int("exclude_diaObjectId", params["exclude_diaObjectId"])
                conditions.append('"diaObjectId" <> $exclude')
        sql = (f"WITH near AS MATERIALIZED (SELECT *, {sky.separation_sql('$ra', '$dec', 'ra', 'dec')} AS {SEPARATION} "
               f"FROM {table} WHERE {near}) SELECT {', '.join(map(quote, columns))}, {SEPARATION} FROM near "
               f"WHERE {' AND '.join(conditions)} ORDER BY {', '.join(order)} LIMIT $limit")
    else:
        bound["id"] = as_int("diaObjectId", params["diaObjectId"])
        sql = (f"WITH object_rows AS MATERIALIZED (SELECT * FROM {table} WHERE \"diaObjectId\" = $id) "
               f"SELECT {', '.join(map(quote, columns))} FROM object_rows WHERE {' AND '.join(conditions)} "
               f"ORDER BY {', '.join(f'{c} DESC' for c in order)} LIMIT $limit")
    with time_limit(con, timeout_s):
        result = con.sql(sql, params=bound).to_arrow_table().to_pylist()
    return tuple(result) if shape in SPATIAL else tuple(reversed(result))


Executor = Callable[[str, Mapping[str, Any], int, float], Rows]  # (shape, params, max_rows, timeout_s)


class Budget:
    """One filter's allowance for one alert. The relay makes one per (filter, alert) and routes every call
    through ``run``; ``before_mjd`` is the alert's midpointMjdTai."""

    def __init__(self, limits: NarrowLimits, before_mjd: float) -> None:
        self.limits = limits
        self.before_mjd = before_mjd
        self.calls = 0
        self.rows = 0
        self.seconds = 0.0

    def run(self, execute_one: Executor, shape: str, params: Mapping[str, Any]) -> Rows:
        limits = self.limits
        if self.calls >= limits.max_calls:
            raise NarrowLimitExceeded(f"at most {limits.max_calls} queries per alert")
        rows_left, seconds_left = limits.max_rows - self.rows, limits.max_seconds - self.seconds
        if rows_left <= 0 or seconds_left <= 0:
            raise NarrowLimitExceeded(f"at most {limits.max_rows} rows and {limits.max_seconds:g} s of queries "
                                      "per alert")
        if not isinstance(params, Mapping):
            raise QueryError("params must be a dict")
        asked = params.get("before_mjd", math.inf)
        pinned = {**params, "before_mjd": min(asked, self.before_mjd) if isinstance(asked, int | float) else asked}
        self.calls += 1
        started = time.perf_counter()
        try:
            result = execute_one(shape, pinned, rows_left, seconds_left)
        finally:
            self.seconds += time.perf_counter() - started
        self.rows += len(result)
        return result
