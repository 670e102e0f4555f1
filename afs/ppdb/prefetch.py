"""Every filter's declared needs, for a whole batch of alerts, from one query.

The needs of all filters are merged per kind (widest window, largest radius, every column), the batch's
alerts go in as one Arrow table, and one SQL statement returns, per alert, a list of rows for each kind:
histories join on diaObjectId, spatial kinds join HEALPix blocks (each alert's pixel and its 8 neighbours
at an order whose pixels are at least four times the radius) and then check the exact separation. Each filter then gets
its own slice: its window, radius, columns and row count. Everything is as of the alert: rows observed
before its midpointMjdTai, objects first seen before it. The result is plain data (dicts, tuples, scalars)
so the sandbox can freeze it.

``narrow.execute`` answers the same kinds one alert at a time; the tests check both give the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from afs.ppdb import sky
from afs.ppdb.needs import KINDS, SEPARATION, SPATIAL, Need, union
from afs.ppdb.queries import time_limit
from afs.gcpause import gc_paused
from afs.ppdb.schema import HEALPIX_COLUMN, HEALPIX_ORDER, load, quote

DEFAULT_MAX_ROWS = 2000
TIME = '"midpointMjdTai"'

Rows = tuple[dict[str, Any], ...]


def order_columns(kind: str) -> tuple[str, ...]:
    """How a kind's rows are ordered (and ties broken): time then key for histories, distance then key."""
    if kind in SPATIAL:
        return (SEPARATION, "diaObjectId" if kind == "neighbours" else "diaSourceId")
    table = load().tables[KINDS[kind]]
    return ("midpointMjdTai", *(k for k in table.primary_key if k != "diaObjectId"))


def alert_keys(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """What the queries need of each alert: its index, object, position and time."""
    sources = [record.get("diaSource") or {} for record in records]
    return pa.table({
        "i": pa.array(range(len(records)), pa.int64()),
        "diaObjectId": pa.array([s.get("diaObjectId") for s in sources], pa.int64()),
        "ra": pa.array([s.get("ra") for s in sources], pa.float64()),
        "dec": pa.array([s.get("dec") for s in sources], pa.float64()),
        "mjd": pa.array([s.get("midpointMjdTai") for s in sources], pa.float64()),
    })


def prefetch(con: duckdb.DuckDBPyConnection, needs_by_filter: Mapping[str, Mapping[str, Need]],
             records: Sequence[Mapping[str, Any]], *, max_rows: int = DEFAULT_MAX_ROWS,
             timeout_s: float = 10.0) -> dict[str, list[dict[str, Rows]]]:
    """filter id -> one dict per alert (in ``records`` order) of kind -> rows, as each filter declared."""
    alerts = alert_keys(records)
    merged = merge(needs_by_filter, max_rows)
    fetched = fetch(con, merged, alerts, timeout_s) if merged and len(records) else None
    return distribute(needs_by_filter, fetched, alerts, merged)


def merge(needs_by_filter: Mapping[str, Mapping[str, Need]], max_rows: int) -> dict[str, Need]:
    """kind -> one need covering every filter's need of that kind."""
    by_kind: dict[str, list[Need]] = {}
    for needs in needs_by_filter.values():
        for kind, need in needs.items():
            by_kind.setdefault(kind, []).append(need)
    return {kind: union(needs, max_rows) for kind, needs in by_kind.items()}


def distribute(needs_by_filter: Mapping[str, Mapping[str, Need]], fetched: pa.Table | None,
               alerts: pa.Table, merged: Mapping[str, Need] | None = None) -> dict[str, list[dict[str, Rows]]]:
    """Each filter's own slice of the merged rows; filters with equal needs share the same tuples."""
    with gc_paused():
        return _distribute(needs_by_filter, fetched, alerts, merged)


def _distribute(needs_by_filter: Mapping[str, Mapping[str, Need]], fetched: pa.Table | None,
                alerts: pa.Table, merged: Mapping[str, Need] | None) -> dict[str, list[dict[str, Rows]]]:
    n = alerts.num_rows
    mjd = alerts.column("mjd").to_pylist()
    merged_rows: dict[str, list[Rows]] = {}
    slices: dict[Need, list[Rows]] = {}
    out = {}
    for filter_id, needs in needs_by_filter.items():
        per_kind = {}
        for kind, need in needs.items():
            if kind not in merged_rows:
                merged_rows[kind] = rows_per_alert(fetched.column(kind)) if fetched is not None else [()] * n
            if need not in slices:
                whole = merged is not None and replace(need, max_rows=merged[kind].max_rows) == merged[kind]
                slices[need] = [cut(need, rows, t, whole) for rows, t in zip(merged_rows[kind], mjd)]
            per_kind[kind] = slices[need]
        kinds = list(per_kind)
        out[filter_id] = [dict(zip(kinds, per_alert)) for per_alert in zip(*per_kind.values())] if kinds \
            else [{} for _ in range(n)]
    return out


def rows_per_alert(column: pa.ChunkedArray) -> list[Rows]:
    """A list<struct> column as one tuple of row dicts per alert, built column by column (much faster than
    letting Arrow build each struct)."""
    lists = column.combine_chunks()
    structs = lists.values  # what lists.offsets index, whatever the slicing and the null slots
    names = [structs.type.field(i).name for i in range(structs.type.num_fields)]
    values = [child.to_pylist() for child in structs.flatten()]
    flat = [dict(zip(names, row)) for row in zip(*values)]
    offsets = lists.offsets.to_pylist()
    present = lists.is_valid().to_pylist()  # an alert with no rows of this kind has a null list
    return [tuple(flat[a:b]) if ok else () for a, b, ok in zip(offsets[:-1], offsets[1:], present)]


def cut(need: Need, rows: Rows, mjd: float | None, whole: bool = False) -> Rows:
    """One filter's share of the merged rows: its window or radius, its row count, its columns. ``whole``:
    the need is the merged one but for its row count."""
    if not whole:
        if need.days is not None and mjd is not None:
            rows = tuple(r for r in rows if r["midpointMjdTai"] >= mjd - need.days)
        if need.nights is not None and mjd is not None:
            rows = tuple(r for r in rows if r["midpointMjdTai"] >= mjd - need.nights)
        if need.radius_arcsec is not None:
            rows = tuple(r for r in rows if r[SEPARATION] <= need.radius_arcsec)
    if len(rows) > need.max_rows:
        rows = rows[:need.max_rows] if need.kind in SPATIAL else rows[len(rows) - need.max_rows:]
    columns = need.columns + ((SEPARATION,) if need.kind in SPATIAL else ())
    if whole or not rows or tuple(rows[0]) == columns:
        return rows
    return tuple({c: r[c] for c in columns} for r in rows)


def fetch(con: duckdb.DuckDBPyConnection, merged: Mapping[str, Need], alerts: pa.Table,
          timeout_s: float) -> pa.Table:
    """One statement over the whole batch: (i, then per kind a list of row structs), one row per alert."""
    params: dict[str, Any] = {}
    ctes = []
    registered = {"prefetch_alerts": alerts}
    mjd = alerts.column("mjd").to_numpy(zero_copy_only=False)
    first, last = (float(np.nanmin(mjd)), float(np.nanmax(mjd))) if np.isfinite(mjd).any() else (0.0, 0.0)
    for kind, need in merged.items():
        if kind in SPATIAL:
            order = sky.neighbour_order(need.radius_arcsec or 0.0)
            registered[f"prefetch_pixels_{kind}"] = block_table(alerts, order)
            params[f"{kind}_shift"] = 2 * (HEALPIX_ORDER - order)
        ctes.append(f"{kind} AS ({_cte(kind, need, params, first, last)})")
    kinds = list(merged)
    select = ", ".join(f"{kind}.rows AS {kind}" for kind in kinds)
    joins = " ".join(f"LEFT JOIN {kind} ON {kind}.i = a.i" for kind in kinds)
    sql = f"WITH {', '.join(ctes)} SELECT a.i, {select} FROM prefetch_alerts a {joins}"
    for name, table in registered.items():
        con.register(name, table)
    try:
        with time_limit(con, timeout_s):
            result = con.sql(sql, params=params).to_arrow_table()
    finally:
        for name in registered:
            con.unregister(name)
    return result.take(pc.sort_indices(result.column("i")))  # alert order (a.i is 0..n-1)


def block_table(alerts: pa.Table, order: int) -> pa.Table:
    """(i, pix): each alert's HEALPix pixel at ``order`` and its neighbours."""
    ra = alerts.column("ra").to_numpy(zero_copy_only=False)
    dec = alerts.column("dec").to_numpy(zero_copy_only=False)
    valid = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    rows, pix = sky.blocks(ra[valid], dec[valid], order)
    pairs = np.unique(np.stack([valid[rows], pix], axis=1), axis=0) if len(rows) else np.zeros((0, 2), np.int64)
    return pa.table({"i": pairs[:, 0], "pix": pairs[:, 1]})


def _struct(columns: Sequence[str], alias: str) -> str:
    return "struct_pack(" + ", ".join(f"{quote(c)} := {alias}.{quote(c)}" for c in columns) + ")"


def _cte(kind: str, need: Need, params: dict[str, Any], first_mjd: float, last_mjd: float) -> str:
    """One kind's rows for every alert, as (i, rows) with rows a list of structs in the kind's order."""
    table = quote(KINDS[kind])
    order = [quote(c) for c in order_columns(kind)]
    params[f"{kind}_max"] = need.max_rows
    conditions = []
    if kind != "neighbours":
        params[f"{kind}_until"] = float(last_mjd)
        conditions = [f"t.{TIME} < a.mjd", f"t.{TIME} < ${kind}_until"]
    window = need.days if need.days is not None else need.nights
    if window is not None:
        params[f"{kind}_window"] = float(window)
        params[f"{kind}_since"] = float(first_mjd - window)
        conditions += [f"t.{TIME} >= a.mjd - ${kind}_window", f"t.{TIME} >= ${kind}_since"]
    if kind in SPATIAL:
        params[f"{kind}_radius"] = need.radius_arcsec
        separation = sky.separation_sql("a.ra", "a.dec", "t.ra", "t.dec")
        source = (f"SELECT a.i, a.mjd, a.\"diaObjectId\" AS alert_object, t.*, {separation} AS {SEPARATION} "
                  f"FROM prefetch_pixels_{kind} p JOIN prefetch_alerts a ON a.i = p.i "
                  f"JOIN {table} t ON (t.{quote(HEALPIX_COLUMN)} >> ${kind}_shift) = p.pix "
                  f"WHERE {' AND '.join(conditions) or 'TRUE'}")
        conditions = [f"{SEPARATION} <= ${kind}_radius"]
        if kind == "neighbours":
            conditions += ['"diaObjectId" IS DISTINCT FROM alert_object',
                           '("firstDiaSourceMjdTai" IS NULL OR "firstDiaSourceMjdTai" < mjd)']
        source = f"SELECT * FROM ({source}) WHERE {' AND '.join(conditions)}"
        rank = ", ".join(order)
    else:
        source = (f"SELECT a.i, t.* FROM prefetch_alerts a JOIN {table} t ON t.\"diaObjectId\" = a.\"diaObjectId\" "
                  f"WHERE {' AND '.join(conditions)}")
        rank = ", ".join(f"{c} DESC" for c in order)  # the most recent rows when the history is capped
    columns = need.columns + ((SEPARATION,) if kind in SPATIAL else ())
    ranked = f"SELECT *, row_number() OVER (PARTITION BY i ORDER BY {rank}) AS rank_ FROM ({source})"
    return (f"SELECT i, list({_struct(columns, 'r')} ORDER BY {', '.join(f'r.{c}' for c in order)}) AS rows "
            f"FROM ({ranked}) r WHERE rank_ <= ${kind}_max GROUP BY i")
