"""What users ask the mirror: an object's history, a cone, a time window. Paginated and row-capped.

Every value a user supplies reaches DuckDB only as a bound parameter; table and column names are accepted
only when they are exactly names from the Felis schema, and the SQL is written with the schema's own
spelling. Pages use keyset pagination (the sort key of the last row, in an opaque cursor), so a page costs
the same however deep it is and rows appended meanwhile never shift what the next page returns.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from afs.ppdb import sky
from afs.ppdb.schema import HEALPIX_COLUMN, TableDef, load, quote

INT64 = (-(2**63), 2**63 - 1)
TIME_COLUMN = "midpointMjdTai"
HISTORY_TABLES = ("DiaSource", "DiaForcedSource")
CONE_TABLES = ("DiaObject", "DiaSource")
SEPARATION = "separation_arcsec"


class QueryError(ValueError):
    """A request the mirror refuses: the message says which parameter and why."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was interrupted."""


@dataclass(frozen=True)
class QueryLimits:
    page_rows: int = 1000
    max_page_rows: int = 10_000
    max_radius_arcsec: float = 3600.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Page:
    """One page of rows; ``next_cursor`` fetches the next (None on the last page)."""

    table: pa.Table
    next_cursor: str | None

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def as_json(self) -> dict[str, Any]:
        """The page as JSON-ready data (NaN, which JSON lacks, becomes null)."""
        rows = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
                for row in self.table.to_pylist()]
        return {"rows": rows, "next_cursor": self.next_cursor}


# ---------------------------------------------------------------------------------------------- parameters
def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not INT64[0] <= value <= INT64[1]:
        raise QueryError(f"{name} must be a 64-bit integer, got {value!r}")
    return value


def as_float(name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QueryError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


def table_def(name: Any, allowed: Sequence[str]) -> TableDef:
    if name not in allowed:
        raise QueryError(f"table must be one of {', '.join(allowed)}, got {name!r}")
    return load().tables[name]


def column_names(table: TableDef, columns: Sequence[str] | None) -> list[str]:
    """The schema's own spelling of each requested column (all columns when None)."""
    if columns is None:
        return [n for n in table.names if n != HEALPIX_COLUMN]
    if isinstance(columns, str) or not columns:
        raise QueryError("columns must be a non-empty list of column names")
    known = {n: n for n in table.names if n != HEALPIX_COLUMN}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise QueryError(f"{table.name} has no column {unknown[0]!r}")
    return [known[c] for c in dict.fromkeys(columns)]


def page_size(limits: QueryLimits, limit: Any) -> int:
    if limit is None:
        return limits.page_rows
    limit = as_int("limit", limit)
    if not 1 <= limit <= limits.max_page_rows:
        raise QueryError(f"limit must be between 1 and {limits.max_page_rows}, got {limit}")
    return limit


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(cursor: Any, kinds: Sequence[type]) -> list[Any]:
    """The sort key a cursor carries, checked value by value against the key's types."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (TypeError, ValueError) as error:
        raise QueryError(f"cursor is not one this service issued: {error}") from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise QueryError("cursor is not one this service issued")
    return [as_int("cursor", v) if kind is int else as_float("cursor", v) for v, kind in zip(values, kinds)]


# ---------------------------------------------------------------------------------------------- execution
@contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt whatever ``con`` runs after ``seconds``; the interruption surfaces as QueryTimeout."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        raise QueryTimeout(f"query interrupted after its {seconds:g} s limit") from None
    finally:
        timer.cancel()


def keyset(order: Sequence[str], cursor: list[Any] | None, params: dict[str, Any]) -> str:
    """``(a, b, c) > (cursor)`` spelled out so DuckDB can use it as a filter."""
    if cursor is None:
        return "TRUE"
    terms = []
    for i in range(len(order)):
        equal = [f"{order[j]} = $k{j}" for j in range(i)]
        terms.append("(" + " AND ".join(equal + [f"{order[i]} > $k{i}"]) + ")")
    params.update({f"k{i}": v for i, v in enumerate(cursor)})
    return "(" + " OR ".join(terms) + ")"


def run_page(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], order_names: Sequence[str],
             size: int, timeout_s: float, hidden: Sequence[str] = ()) -> Page:
    """Run a keyset-paginated query for one page (it asks for one row more to know whether more follow)."""
    params["limit"] = size + 1
    with time_limit(con, timeout_s):
        table = con.sql(sql + " LIMIT $limit", params=params).to_arrow_table()
    next_cursor = None
    if table.num_rows > size:
        table = table.slice(0, size)
        next_cursor = encode_cursor([table.column(n)[size - 1].as_py() for n in order_names])
    return Page(table.drop_columns([h for h in hidden if h in table.column_names]), next_cursor)


# ---------------------------------------------------------------------------------------------- queries
def history(con: duckdb.DuckDBPyConnection, dia_object_id: int, *, table: str = "DiaSource",
            columns: Sequence[str] | None = None, start_mjd: float | None = None, end_mjd: float | None = None,
            cursor: str | None = None, limit: int | None = None, limits: QueryLimits = QueryLimits()) -> Page:
    """The object's DiaSources (or DiaForcedSources) in time order, optionally within [start_mjd, end_mjd)."""
    tdef = table_def(table, HISTORY_TABLES)
    params: dict[str, Any] = {"id": as_int("dia_object_id", dia_object_id),
                              "start": -math.inf if start_mjd is None else as_float("start_mjd", start_mjd),
                              "end": math.inf if end_mjd is None else as_float("end_mjd", end_mjd)}
    order = (TIME_COLUMN,) + tuple(k for k in tdef.primary_key if k != "diaObjectId")
    kinds = [float] + [int] * (len(order) - 1)
    after = keyset([quote(o) for o in order], None if cursor is None else decode_cursor(cursor, kinds), params)
    names = column_names(tdef, columns)
    hidden = [o for o in order if o not in names]
    select = ", ".join(quote(n) for n in names + hidden)
    # The object's rows come through the ART index; DuckDB would scan instead under the ORDER BY ... LIMIT.
    sql = (f"WITH object_rows AS MATERIALIZED (SELECT {select} FROM {quote(tdef.name)} WHERE \"diaObjectId\" = $id) "
           f"SELECT * FROM object_rows WHERE {quote(TIME_COLUMN)} >= $start AND {quote(TIME_COLUMN)} < $end "
           f"AND {after} ORDER BY {', '.join(map(quote, order))}")
    return run_page(con, sql, params, order, page_size(limits, limit), limits.timeout_s, hidden)


def window(con: duckdb.DuckDBPyConnection, start_mjd: float, end_mjd: float, *, table: str = "DiaSource",
           columns: Sequence[str] | None = None, cursor: str | None = None, limit: int | None = None,
           limits: QueryLimits = QueryLimits()) -> Page:
    """Every source observed in [start_mjd, end_mjd), in time order."""
    tdef = table_def(table, HISTORY_TABLES)
    params: dict[str, Any] = {"start": as_float("start_mjd", start_mjd), "end": as_float("end_mjd", end_mjd)}
    order = (TIME_COLUMN,) + tdef.primary_key
    kinds = [float] + [int] * len(tdef.primary_key)
    after = keyset([quote(o) for o in order], None if cursor is None else decode_cursor(cursor, kinds), params)
    names = column_names(tdef, columns)
    hidden = [o for o in order if o not in names]
    select = ", ".join(quote(n) for n in names + hidden)
    sql = (f"SELECT {select} FROM {quote(tdef.name)} WHERE {quote(TIME_COLUMN)} >= $start "
           f"AND {quote(TIME_COLUMN)} < $end AND {after} ORDER BY {', '.join(map(quote, order))}")
    return run_page(con, sql, params, order, page_size(limits, limit), limits.timeout_s, hidden)


def cone_condition(ra: float, dec: float, radius_arcsec: float, column: str, params: dict[str, Any]) -> str:
    """The HEALPix pre-filter for a cone: an IN-list the ART index answers, or nested-id ranges."""
    listed, starts, ends = sky.cone_plan(ra, dec, radius_arcsec)
    if len(listed):
        params.update({f"p{i}": int(p) for i, p in enumerate(listed)})
        return f"{column} IN ({', '.join(f'$p{i}' for i in range(len(listed)))})"
    params.update({f"lo{i}": int(v) for i, v in enumerate(starts)})
    params.update({f"hi{i}": int(v) for i, v in enumerate(ends)})
    return "(" + " OR ".join(f"{column} BETWEEN $lo{i} AND $hi{i}" for i in range(len(starts))) + ")"


def cone(con: duckdb.DuckDBPyConnection, ra: float, dec: float, radius_arcsec: float, *, table: str = "DiaObject",
         columns: Sequence[str] | None = None, cursor: str | None = None, limit: int | None = None,
         limits: QueryLimits = QueryLimits()) -> Page:
    """Objects (latest version) or sources within the radius, nearest first, with their separation."""
    tdef = table_def(table, CONE_TABLES)
    ra, dec = as_float("ra", ra, 0.0, 360.0), as_float("dec", dec, -90.0, 90.0)
    radius = as_float("radius_arcsec", radius_arcsec, 0.0, limits.max_radius_arcsec)
    params: dict[str, Any] = {"ra": ra, "dec": dec, "radius": radius}
    key = tdef.primary_key[0]
    order = (SEPARATION, key)
    after = keyset([quote(o) for o in order], None if cursor is None else decode_cursor(cursor, [float, int]),
                   params)
    names = column_names(tdef, columns)
    size = page_size(limits, limit)
    pixels: dict[str, Any] = {}
    near = cone_condition(ra, dec, radius, quote(HEALPIX_COLUMN), pixels)
    separation = sky.separation_sql("$ra", "$dec", "ra", "dec")
    if tdef.name == "DiaSource":
        select = ", ".join(quote(n) for n in names + ([key] if key not in names else []))
        sql = (f"WITH near AS MATERIALIZED (SELECT {select}, {separation} AS {SEPARATION} FROM \"DiaSource\" "
               f"WHERE {near}) SELECT * FROM near WHERE {SEPARATION} <= $radius AND {after} "
               f"ORDER BY {', '.join(map(quote, order))}")
        return run_page(con, sql, params | pixels, order, size, limits.timeout_s, [key] if key not in names else [])
    # Objects, in one snapshot: candidates among the versions in the cone's pixels (ART), the latest version
    # of each (DiaObjectLast's primary key) checked against the cone, then the page's full rows (ART).
    con.begin()
    try:
        with time_limit(con, limits.timeout_s):
            found = con.sql(f'WITH near AS MATERIALIZED (SELECT "diaObjectId" FROM "DiaObject" WHERE {near}) '
                            'SELECT DISTINCT "diaObjectId" FROM near', params=pixels).fetchnumpy()["diaObjectId"]
        candidates = {f"c{n}": int(i) for n, i in enumerate(found)} or {"c0": None}
        listed = ", ".join(f"${name}" for name in candidates)
        sql = (f'WITH latest AS MATERIALIZED (SELECT "diaObjectId", "validityStartMjdTai", {separation} AS '
               f'{SEPARATION} FROM "DiaObjectLast" WHERE "diaObjectId" IN ({listed})) '
               f"SELECT * FROM latest WHERE {SEPARATION} <= $radius AND {after} "
               f"ORDER BY {', '.join(map(quote, order))}")
        page = run_page(con, sql, params | candidates, order, size, limits.timeout_s)
        rows = latest_rows(con, page.table, names, limits.timeout_s)
    finally:
        con.commit()
    return Page(rows, page.next_cursor)


def latest_rows(con: duckdb.DuckDBPyConnection, found: pa.Table, names: list[str], timeout_s: float) -> pa.Table:
    """The DiaObject versions named in ``found`` (diaObjectId, validityStartMjdTai, separation), in its order."""
    ids = found.column("diaObjectId").to_pylist()
    select = ", ".join(quote(n) for n in dict.fromkeys(["diaObjectId", "validityStartMjdTai", *names]))
    params = {f"i{n}": i for n, i in enumerate(ids)} or {"i0": None}
    listed = ", ".join(f"$i{n}" for n in range(len(params)))
    sql = (f"WITH versions AS MATERIALIZED (SELECT {select} FROM \"DiaObject\" WHERE \"diaObjectId\" IN ({listed})) "
           "SELECT * FROM versions")
    with time_limit(con, timeout_s):
        versions = con.sql(sql, params=params).to_arrow_table()
    ranked = found.append_column("rank_", pa.array(range(found.num_rows), pa.int64()))
    joined = ranked.join(versions, ["diaObjectId", "validityStartMjdTai"]).sort_by("rank_")
    return joined.select([*names, SEPARATION])
