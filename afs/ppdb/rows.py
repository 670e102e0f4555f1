"""Decoded alerts and Parquet batches as Arrow tables in the mirror's own column layout.

An alert repeats its object's history: in steady state ~95% of its prvDiaSources and prvDiaForcedSources are
already in the mirror. Converting Python dicts to Arrow is the expensive step, so rows are first collapsed
by primary key, the keys the mirror already holds are dropped (one lookup per table, Mirror.known_keys), and
only the remaining rows are converted. Inserts stay ``INSERT OR IGNORE``, so skipping is an optimisation only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from afs.gcpause import gc_paused
from afs.ppdb import sky
from afs.ppdb.schema import HEALPIX_COLUMN, TableDef, load

# Where each mirrored table's rows sit in a v11.1 alert: (alert key, holds a list of rows).
ALERT_FIELDS = {"DiaSource": (("diaSource", False), ("prvDiaSources", True)),
                "DiaForcedSource": (("prvDiaForcedSources", True),),
                "DiaObject": (("diaObject", False),),
                "SSSource": (("ssSource", False),)}

KnownKeys = Callable[[str, pa.Table], pa.Table]  # (table, candidate keys) -> the keys already stored


def collect(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[Any, Mapping[str, Any]]]:
    """Rows per table keyed by primary key: a row repeated in the batch (or a re-delivered alert) counts once."""
    tables = load().tables
    out: dict[str, dict[Any, Mapping[str, Any]]] = {}
    for name, fields in ALERT_FIELDS.items():
        key_of = itemgetter(*tables[name].primary_key)
        rows: dict[Any, Mapping[str, Any]] = {}
        for record in records:
            for field, many in fields:
                value = record.get(field)
                if value is None:
                    continue
                for row in value if many else (value,):
                    try:
                        rows[key_of(row)] = row
                    except KeyError:  # an older alert schema without this key: not a PPDB row
                        continue
        out[name] = rows
    return out


def keys_table(table: TableDef, keys: Iterable[Any]) -> pa.Table:
    """Primary-key values as an Arrow table (tuples for composite keys)."""
    names = table.primary_key
    keys = list(keys)
    if len(names) == 1:
        columns = [keys]
    else:
        columns = [list(column) for column in zip(*keys)] or [[] for _ in names]
    schema = table.arrow_schema()
    return pa.table({n: pa.array(c, schema.field(n).type) for n, c in zip(names, columns)})


def key_set(table: TableDef, keys: pa.Table) -> set[Any]:
    columns = [keys.column(n).to_pylist() for n in table.primary_key]
    return set(columns[0]) if len(columns) == 1 else set(zip(*columns))


def alert_tables(records: Iterable[Mapping[str, Any]],
                 known_keys: KnownKeys) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """The batch's rows the mirror does not hold yet, per table, as Arrow; and how many it already held."""
    with gc_paused():
        return _alert_tables(records, known_keys)


def _alert_tables(records: Iterable[Mapping[str, Any]],
                  known_keys: KnownKeys) -> tuple[dict[str, pa.Table], dict[str, int]]:
    tables = load().tables
    new, known = {}, {}
    for name, rows in collect(records).items():
        if not rows:
            continue
        table = tables[name]
        stored = key_set(table, known_keys(name, keys_table(table, rows)))
        fresh = [row for key, row in rows.items() if key not in stored]
        known[name] = len(rows) - len(fresh)
        if fresh:
            new[name] = pa.Table.from_struct_array(pa.array(fresh, type=pa.struct(_source_fields(table))))
    return new, known


def _source_fields(table: TableDef) -> list[pa.Field]:
    """The table's columns as they come in (the mirror's own healpix is computed, not read)."""
    return [pa.field(f.name, f.type) for f in table.arrow_schema() if f.name != HEALPIX_COLUMN]


def conform(table: TableDef, data: pa.Table) -> tuple[pa.Table, int]:
    """``data`` in the table's column order and types, with its healpix computed; rows lacking a value in a
    non-nullable column are dropped and counted. Columns the table does not have are ignored."""
    columns = []
    for column, field in zip(table.columns, table.arrow_schema()):
        if column.name == HEALPIX_COLUMN:
            ra, dec = (data.column(c) if c in data.column_names else pa.nulls(len(data), pa.float64())
                       for c in ("ra", "dec"))
            ra, dec = ra.to_numpy(zero_copy_only=False), dec.to_numpy(zero_copy_only=False)
            valid = np.isfinite(ra) & np.isfinite(dec)
            index = np.zeros(len(ra), np.int64)
            index[valid] = sky.pixels(ra[valid], dec[valid])
            columns.append(pa.array(index))
        elif column.name in data.column_names:
            columns.append(data.column(column.name).cast(field.type))
        else:
            columns.append(pa.nulls(len(data), field.type))
    result = pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in table.arrow_schema()]))
    valid = np.ones(len(result), bool)
    for column in table.columns:
        if not column.nullable and result.column(column.name).null_count:
            valid &= pc.is_valid(result.column(column.name)).to_numpy(zero_copy_only=False)
    if valid.all():
        return result, 0
    return result.filter(pa.array(valid)), int((~valid).sum())
