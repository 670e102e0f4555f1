"""The v11.1 schema's columns, and column tables turned into schema-ordered record dicts ready for Avro."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lsst.alert.packet.schema import get_schema_root


@dataclass(frozen=True)
class Column:
    """One field of a v11.1 record."""

    name: str
    type: str        # Avro base type; timestamp-micros as "timestamp"
    nullable: bool


def _columns(record: str) -> tuple[Column, ...]:
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
        out.append(Column(field["name"], kind, nullable))
    return tuple(out)


DIA_SOURCE = _columns("diaSource")
DIA_FORCED_SOURCE = _columns("diaForcedSource")
DIA_OBJECT = _columns("diaObject")
SS_SOURCE = _columns("ssSource")
MPC_ORBITS = _columns("mpc_orbits")


def to_records(table: dict[str, Any], columns: tuple[Column, ...], n: int) -> list[dict]:
    """One dict per row with every schema field; a missing column is a bug (KeyError), not a silent null.

    Rows start as copies of a template holding the columns that are constant; only the others are
    assigned row by row (about twice as fast as building each dict from scratch).
    """
    template, varying = {}, []
    for column in columns:
        constant, value = _column_values(table[column.name], column)
        template[column.name] = value if constant else None
        if not constant:
            varying.append((column.name, value))
    copy = template.copy
    rows = [copy() for _ in range(n)]
    for name, values in varying:
        for row, value in zip(rows, values):
            row[name] = value
    return rows


def _column_values(value: Any, column: Column) -> tuple[bool, Any]:
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
