"""The mirror's DDL matches Rubin's Felis YAML: columns, types, nullability and primary keys of every table.

The expectation is read from the raw YAML files with a plain YAML parser, independently of the Felis
loader the mirror uses, and compared with what DuckDB's own catalog says the mirror file holds.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import duckdb
import pytest
import yaml
from lsst.alert.packet.schema import get_schema_root

from afs.ppdb.mirror import Mirror, SchemaMismatch
from afs.ppdb.schema import HEALPIX_COLUMN, MIRRORED, SPATIAL

DUCKDB_TYPE = {"boolean": "BOOLEAN", "byte": "TINYINT", "short": "SMALLINT", "int": "INTEGER", "long": "BIGINT",
               "float": "FLOAT", "double": "DOUBLE", "char": "VARCHAR", "string": "VARCHAR", "text": "VARCHAR",
               "unicode": "VARCHAR", "binary": "BLOB", "timestamp": "TIMESTAMP"}
ALERT_RECORDS = {"DiaSource": "diaSource", "DiaForcedSource": "diaForcedSource", "DiaObject": "diaObject",
                 "SSSource": "ssSource", "mpc_orbits": "mpc_orbits"}


def raw(file: str) -> dict:
    return yaml.safe_load((resources.files("lsst.sdm.schemas") / file).read_text())


def raw_table(file: str, name: str) -> dict:
    return next(t for t in raw(file)["tables"] if t["name"] == name)


def key_names(key: str | list[str] | None) -> list[str]:
    return [k.rsplit(".", 1)[1] for k in ([key] if isinstance(key, str) else key or [])]


def expected(name: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """(name, DuckDB type, nullable) of each column and the primary key, from the YAML files themselves."""
    if name not in MIRRORED:  # the tables the mirror takes straight from apdb.yaml
        table = raw_table("apdb.yaml", name)
        columns = [(c["name"], DUCKDB_TYPE[c["datatype"]], c.get("nullable", True)) for c in table["columns"]]
        return columns, key_names(table.get("primaryKey"))
    ppdb = raw("ppdb.yaml")
    table = raw_table("ppdb.yaml", name)
    columns = []
    for resource, referenced in table["columnRefs"].items():
        file = ppdb["resources"][resource]["uri"]
        for ref_table, refs in referenced.items():
            source = {c["name"]: c for c in raw_table(file, ref_table)["columns"]}
            for column, override in refs.items():
                assert override is None, "this test expects plain column references"
                c = source[column]
                columns.append((column, DUCKDB_TYPE[c["datatype"]], c.get("nullable", True)))
    key = key_names(table.get("primaryKey")) or key_names(raw_table("apdb.yaml", name).get("primaryKey"))
    return columns, key


def actual(con: duckdb.DuckDBPyConnection, name: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
    columns = con.execute("SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
                          "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
    keys = con.execute("SELECT constraint_column_names FROM duckdb_constraints() "
                       "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'", [name]).fetchall()
    return [tuple(c) for c in columns], keys[0][0] if keys else []


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("schema") / "ppdb.duckdb"
    Mirror(path).close()
    return duckdb.connect(str(path), read_only=True)


@pytest.mark.parametrize("name", [*MIRRORED, "DiaObjectLast", "metadata"])
def test_ddl_matches_the_yaml(catalog: duckdb.DuckDBPyConnection, name: str) -> None:
    columns, key = expected(name)
    if name in SPATIAL:
        columns.append((HEALPIX_COLUMN, "BIGINT", False))
    got_columns, got_key = actual(catalog, name)
    assert got_columns == columns
    assert got_key == key
    assert key, f"{name} has a primary key (replays are idempotent by it)"


def test_latest_view_has_every_diaobject_column(catalog: duckdb.DuckDBPyConnection) -> None:
    view = [c[0] for c in actual(catalog, "DiaObject_latest")[0]]
    assert view == [c[0] for c in expected("DiaObject")[0]] + [HEALPIX_COLUMN]


def test_every_alert_field_has_a_column(catalog: duckdb.DuckDBPyConnection) -> None:
    """Ingest maps v11.1 alert records onto PPDB rows by name: nothing in an alert may be left out."""
    root = Path(get_schema_root()) / "11" / "1"
    for table, record in ALERT_RECORDS.items():
        fields = [f["name"] for f in json.loads((root / f"lsst.v11_1.{record}.avsc").read_text())["fields"]]
        columns = {c[0] for c in actual(catalog, table)[0]}
        assert set(fields) <= columns, (table, set(fields) - columns)


def test_the_mirror_records_which_schema_it_was_built_from(tmp_path: Path) -> None:
    path = tmp_path / "ppdb.duckdb"
    with Mirror(path) as mirror:
        built_from = mirror.info()["built_from"]
    assert built_from["schema"] == "ppdb"
    assert built_from["schema_version"] == str(raw("ppdb.yaml")["version"])
    assert built_from["lsst_sdm_schemas"] and built_from["lsst_felis"]
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE metadata SET value = '9.9.9' WHERE name = 'schema_version'")
    with pytest.raises(SchemaMismatch, match="9.9.9"):
        Mirror(path)
