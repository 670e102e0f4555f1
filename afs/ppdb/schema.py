"""The mirror's tables as DuckDB DDL, generated at run time from Rubin's Felis YAML, never retyped.

Source: ``lsst/sdm/schemas/ppdb.yaml`` in the lsst-sdm-schemas package, loaded with Felis's own parser
(``felis.datamodel.Schema.from_uri``), which resolves the ``columnRefs`` that ppdb.yaml takes from
``apdb.yaml`` and ``sso_base.yaml``. Where ppdb.yaml leaves something to the APDB table it refers to, the
APDB definition is used: DiaForcedSource's primary key (diaObjectId, visit, detector). Two more tables come
straight from apdb.yaml: ``DiaObjectLast`` (APDB's own one-row-per-object index of the latest DiaObject
version, which the latest view joins) and ``metadata`` (key/value pairs; the mirror records there which
schema it was built from).

Mirror-only additions, named here once: a ``healpix`` column (nested HEALPix index at HEALPIX_ORDER of the
row's ra/dec) on DiaSource, DiaObject and DiaObjectLast, and DuckDB ART indexes on the columns lookups go by.
Felis types map to DuckDB types one to one; string lengths are not enforced (DuckDB ignores them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources

import pyarrow as pa
from felis.datamodel import Schema, Table

MIRRORED = ("DiaObject", "DiaSource", "DiaForcedSource", "SSObject", "SSSource", "mpc_orbits")
FROM_APDB = ("DiaObjectLast", "metadata")
LATEST_VIEW = "DiaObject_latest"

HEALPIX_COLUMN = "healpix"
HEALPIX_ORDER = 14  # ~13" pixels: a cone of up to ~3' is an IN-list of pixels the ART index answers
SPATIAL = ("DiaSource", "DiaObject", "DiaObjectLast")

# ART indexes beyond the primary keys, one per lookup the mirror serves: histories and versions by object,
# cones by pixel. DuckDB scans an ART for equality and IN-lists of constants only, and only single-column
# ones. Object cones find candidates among the (append-only) versions: an ART on DiaObjectLast.healpix
# would make its upserts ~10x slower.
INDEXED = {"DiaSource": ("diaObjectId", HEALPIX_COLUMN), "DiaForcedSource": ("diaObjectId",),
           "DiaObject": ("diaObjectId", HEALPIX_COLUMN)}

DUCKDB_TYPES = {
    "boolean": "BOOLEAN", "byte": "TINYINT", "short": "SMALLINT", "int": "INTEGER", "long": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "char": "VARCHAR", "string": "VARCHAR", "unicode": "VARCHAR",
    "text": "VARCHAR", "binary": "BLOB", "timestamp": "TIMESTAMP",
}
ARROW_TYPES = {
    "BOOLEAN": pa.bool_(), "TINYINT": pa.int8(), "SMALLINT": pa.int16(), "INTEGER": pa.int32(),
    "BIGINT": pa.int64(), "FLOAT": pa.float32(), "DOUBLE": pa.float64(), "VARCHAR": pa.string(),
    "BLOB": pa.binary(), "TIMESTAMP": pa.timestamp("us"),
}


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes: schema names such as ``dec`` or ``e`` need no special casing."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class ColumnDef:
    name: str
    felis_type: str  # Felis datatype; "" for the mirror's own columns
    sql_type: str
    nullable: bool


@dataclass(frozen=True)
class TableDef:
    name: str
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnDef:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.sql_type], c.nullable) for c in self.columns])

    def create_sql(self) -> list[str]:
        lines = [f"{quote(c.name)} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns]
        if self.primary_key:
            lines.append(f"PRIMARY KEY ({', '.join(map(quote, self.primary_key))})")
        body = ",\n  ".join(lines)
        statements = [f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n  {body}\n)"]
        statements += [f"CREATE INDEX IF NOT EXISTS {quote(f'idx_{self.name}_{column}')} "
                       f"ON {quote(self.name)} ({quote(column)})" for column in self.indexes]
        return statements


@dataclass(frozen=True)
class MirrorSchema:
    name: str
    version: str  # ppdb.yaml's own version
    package: str  # lsst-sdm-schemas distribution version it came from
    tables: dict[str, TableDef]

    def ddl(self) -> list[str]:
        """Every statement that creates the mirror, tables in dependency-free order, then the latest view."""
        statements = [s for table in self.tables.values() for s in table.create_sql()]
        statements.append(f"CREATE OR REPLACE VIEW {quote(LATEST_VIEW)} AS SELECT o.* "
                          'FROM "DiaObject" o JOIN "DiaObjectLast" l ON o."diaObjectId" = l."diaObjectId" '
                          'AND o."validityStartMjdTai" = l."validityStartMjdTai"')
        return statements

    def provenance(self) -> dict[str, str]:
        """What the mirror records in its metadata table, to say which schema it was built from."""
        return {"schema": self.name, "schema_version": self.version, "lsst_sdm_schemas": self.package,
                "lsst_felis": metadata.version("lsst-felis"), "healpix_order": str(HEALPIX_ORDER)}


def felis_schema(file: str) -> Schema:
    """One schema file of lsst-sdm-schemas through Felis's own loader (resolving its resources)."""
    uri = str(resources.files("lsst.sdm.schemas") / file)
    return Schema.from_uri(uri, context={"id_generation": True})


def _table_def(table: Table, primary_key: tuple[str, ...], extra: tuple[ColumnDef, ...] = ()) -> TableDef:
    columns = tuple(ColumnDef(c.name, c.datatype.value, DUCKDB_TYPES[c.datatype.value], c.nullable)
                    for c in table.columns) + extra
    return TableDef(table.name, columns, primary_key, INDEXED.get(table.name, ()))


def _primary_key(table: Table) -> tuple[str, ...]:
    """Felis spells keys as column ids ("#Table.column"); the mirror needs the column names."""
    key = table.primary_key
    ids = [key] if isinstance(key, str) else list(key or ())
    return tuple(i.rsplit(".", 1)[1] for i in ids)


@cache
def load() -> MirrorSchema:
    ppdb, apdb = felis_schema("ppdb.yaml"), felis_schema("apdb.yaml")
    by_name = {t.name: t for t in ppdb.tables}
    apdb_tables = {t.name: t for t in apdb.tables}
    healpix = (ColumnDef(HEALPIX_COLUMN, "", "BIGINT", False),)
    tables = {}
    for name in MIRRORED:
        table = by_name[name]
        key = _primary_key(table) or _primary_key(apdb_tables[name])
        tables[name] = _table_def(table, key, healpix if name in SPATIAL else ())
    for name in FROM_APDB:
        table = apdb_tables[name]
        tables[name] = _table_def(table, _primary_key(table), healpix if name in SPATIAL else ())
    version = ppdb.version if isinstance(ppdb.version, str) else ppdb.version.current
    return MirrorSchema(ppdb.name, str(version), metadata.version("lsst-sdm-schemas"), tables)
