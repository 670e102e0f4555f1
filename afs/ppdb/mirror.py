"""The PPDB mirror's owner: the one process that opens the DuckDB file read-write.

DuckDB allows one writing process per database file, and while it has the file open no other process may
open it at all, not even read-only. So the mirror has exactly one owner, ``Mirror``, and everything else
reaches it through that owner:

- Writes (the stream worker's per-batch appends, bulk Parquet loads) are serialised by a lock and each is
  one transaction, so a reader sees a batch completely or not at all.
- Reads run on their own cursors of the same database instance. DuckDB gives every transaction a snapshot
  (MVCC), so a reader never sees half a batch and does not wait for appends (only for a checkpoint, see
  CHECKPOINT_THRESHOLD); a prefetch for a whole batch of alerts is one query and therefore one snapshot.
- Other processes (the API, the CLI, more stream workers) use ``MirrorClient`` (afs.ppdb.service), which
  calls the same methods on the owner over Arrow Flight (``afs ppdb serve``); rows travel as Arrow.

Past one machine: the owner is a network service, so any number of API replicas and stream workers on
any machines share it. When one writer is no longer enough, split the sky: N owners, each holding the
objects whose HEALPix pixel (at a coarse order) falls in its share, workers routing each batch's rows by
pixel, history and prefetch going to the owner of the object's pixel and cone searches to the owners whose
pixels the cone overlaps. Cold history can also be exported as Parquet (`COPY ... TO`) to object storage
and read by stateless DuckDB readers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from afs.ppdb import narrow, prefetch, queries, rows
from afs.ppdb.needs import Needs
from afs.ppdb.schema import MIRRORED, MirrorSchema, load, quote

LOAD_BATCH_ROWS = 200_000
# A checkpoint (the WAL written into the file) blocks readers for 1.5-4 s at 10^7 rows, however little the WAL
# holds. DuckDB's 16 MB default does that every other 10,000-alert visit (reads stalled up to 1.8 s during
# ingest); at 1 GB it is about once an hour of Rubin visits (reads then took at most ~40 ms during ingest).
CHECKPOINT_THRESHOLD = "1GB"
# Known-key checks look keys up in an ART index when they are fewer than this share of the table's rows, else
# scan its key columns: a lookup costs 3-30 us per row fetched, a scan 1-10 ns per stored row (measured at
# 3-50 M rows). It is DuckDB's own threshold (index_scan_percentage) for the same choice.
INDEX_SCAN_SHARE = 0.001


class SchemaMismatch(RuntimeError):
    """The file was built from another PPDB schema version than the one installed."""


@dataclass
class IngestReport:
    """Rows per table: known (already held, skipped before conversion), offered (handed to the insert),
    inserted (new), rejected (a required value missing)."""

    known: Counter[str] = field(default_factory=Counter)
    offered: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, other: IngestReport) -> None:
        self.known.update(other.known)
        self.offered.update(other.offered)
        self.inserted.update(other.inserted)
        self.rejected.update(other.rejected)
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {"known": dict(self.known), "offered": dict(self.offered), "inserted": dict(self.inserted),
                "rejected": dict(self.rejected),
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IngestReport:
        return cls(Counter(data["known"]), Counter(data["offered"]), Counter(data["inserted"]),
                   Counter(data["rejected"]), data["seconds"])


class Mirror:
    """The owner of one mirror file. Thread-safe: writes are serialised, reads run side by side."""

    def __init__(self, path: str | Path, *, memory_limit: str | None = None, threads: int | None = None,
                 checkpoint_threshold: str = CHECKPOINT_THRESHOLD, limits: queries.QueryLimits = queries.QueryLimits(),
                 prefetch_max_rows: int = prefetch.DEFAULT_MAX_ROWS, read_only: bool = False) -> None:
        self.path = Path(path)
        self.limits = limits
        self.prefetch_max_rows = prefetch_max_rows
        self.schema: MirrorSchema = load()
        config: dict[str, Any] = {} if read_only else {"checkpoint_threshold": checkpoint_threshold}
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        self._write_lock = threading.Lock()
        self._check_or_create(read_only)

    @classmethod
    def from_settings(cls, settings: Any, read_only: bool = False) -> Mirror:
        return cls(settings.ppdb_path, memory_limit=settings.ppdb_memory_limit, threads=settings.ppdb_threads,
                   checkpoint_threshold=settings.ppdb_checkpoint_threshold, limits=query_limits(settings),
                   prefetch_max_rows=settings.ppdb_prefetch_max_rows,
                   read_only=read_only)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_or_create(self, read_only: bool) -> None:
        exists = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'metadata'"
        if self._con.execute(exists).fetchall()[0][0]:
            recorded = dict(self._con.sql('SELECT "name", "value" FROM "metadata"').fetchall())
            wanted = self.schema.provenance()
            if recorded.get("schema_version") != wanted["schema_version"]:
                raise SchemaMismatch(f"{self.path} holds PPDB schema {recorded.get('schema_version')}, this service "
                                     f"uses {wanted['schema_version']}: rebuild the mirror or use a matching release")
            return
        if read_only:
            raise FileNotFoundError(f"{self.path} is not a PPDB mirror")
        with self.transaction() as con:
            for statement in self.schema.ddl():
                con.execute(statement)
            con.executemany('INSERT INTO "metadata" VALUES (?, ?)', list(self.schema.provenance().items()))

    # ------------------------------------------------------------------------------------------ writes
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The write connection inside one transaction, for one writer at a time."""
        with self._write_lock:
            self._con.begin()
            try:
                yield self._con
            except BaseException:
                self._con.rollback()
                raise
            self._con.commit()

    def ingest_alerts(self, records: Iterable[Mapping[str, Any]]) -> IngestReport:
        """Append one decoded batch: its diaSource, prvDiaSources, prvDiaForcedSources, diaObject and ssSource
        rows. Idempotent: a re-delivered alert adds nothing. The pipeline's one call per batch."""
        started = time.perf_counter()
        new, known = rows.alert_tables(records, self.known_keys)
        report = self.ingest_tables(new)
        report.known.update(known)
        report.seconds = time.perf_counter() - started
        return report

    def known_keys(self, table: str, keys: pa.Table) -> pa.Table:
        """The rows of ``keys`` (primary-key columns of ``table``) that the mirror already holds.

        A semi join scans the table's key columns: cheap while the table is small, but its cost grows with the
        table (~0.5 s per 1,000 alerts at 5*10^7 forced sources with unclustered ids). Once the keys are fewer
        than INDEX_SCAN_SHARE of the rows, the stored side is first narrowed to the keys' first column, which has
        an ART index in every table alerts write to (the primary key's own, or diaObjectId's): DuckDB looks
        them up, 3-30 us per row fetched, however large the table.
        """
        tdef = self.schema.tables[table]
        first = quote(tdef.primary_key[0])
        on = " AND ".join(f"k.{quote(c)} = t.{quote(c)}" for c in tdef.primary_key)
        with self.reader() as con:
            con.register("candidate_keys", keys)
            stored = quote(table)
            if keys.num_rows < INDEX_SCAN_SHARE * self._estimated_rows(con, table):
                # A join pushes its keys into the scan as an IN filter, which the ART answers, only while they
                # are fewer than this; and only in a query of its own (MATERIALIZED).
                con.execute(f"SET dynamic_or_filter_threshold = {keys.num_rows}")
                stored = (f"(WITH s AS MATERIALIZED (SELECT {', '.join(map(quote, tdef.primary_key))} FROM "
                          f"{quote(table)} SEMI JOIN candidate_keys USING ({first})) FROM s)")
            return con.sql(f"SELECT k.* FROM candidate_keys k SEMI JOIN {stored} t ON {on}").to_arrow_table()

    @staticmethod
    def _estimated_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
        query = "SELECT estimated_size FROM duckdb_tables() WHERE table_name = ?"
        return con.execute(query, [table]).fetchall()[0][0]

    def ingest_tables(self, tables: Mapping[str, pa.Table]) -> IngestReport:
        """Append Arrow tables named by PPDB table (any subset of columns; healpix is computed) in one
        transaction; rows whose primary key is already stored are ignored. New DiaObject versions also
        move DiaObjectLast, which the latest view joins."""
        started = time.perf_counter()
        report = IngestReport()
        conformed = {}
        for name, data in tables.items():
            if name not in MIRRORED:
                raise ValueError(f"{name!r} is not a mirrored table ({', '.join(MIRRORED)})")
            conformed[name], rejected = rows.conform(self.schema.tables[name], data)
            report.offered[name] += data.num_rows
            report.rejected[name] += rejected
        with self.transaction() as con:
            for name, data in conformed.items():
                if data.num_rows:
                    report.inserted[name] += self._insert(con, name, data)
            if conformed.get("DiaObject") is not None and conformed["DiaObject"].num_rows:
                self._move_latest(con, conformed["DiaObject"])
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> int:
        con.register("incoming", data)
        try:
            inserted = con.execute(f"INSERT OR IGNORE INTO {quote(name)} BY NAME SELECT * FROM incoming")
            return inserted.fetchall()[0][0]
        finally:
            con.unregister("incoming")

    def _move_latest(self, con: duckdb.DuckDBPyConnection, versions: pa.Table) -> None:
        """Point DiaObjectLast at each object's newest version in ``versions`` unless it holds a newer one."""
        last = self.schema.tables["DiaObjectLast"]
        columns = ", ".join(map(quote, last.names))
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in last.names if n != "diaObjectId")
        newest = 'row_number() OVER (PARTITION BY "diaObjectId" ORDER BY "validityStartMjdTai" DESC) = 1'
        con.register("incoming", rows.conform(last, versions)[0])
        try:
            con.execute(f'INSERT INTO "DiaObjectLast" ({columns}) SELECT {columns} FROM incoming QUALIFY {newest} '
                        f'ON CONFLICT ("diaObjectId") DO UPDATE SET {updates} '
                        'WHERE excluded."validityStartMjdTai" > "DiaObjectLast"."validityStartMjdTai"')
        finally:
            con.unregister("incoming")

    def checkpoint(self) -> None:
        """Write the WAL into the file now (DuckDB also does it when the WAL passes checkpoint_threshold)."""
        with self._write_lock:
            self._con.execute("CHECKPOINT")

    def load_parquet(self, path: str | Path, table: str | None = None,
                     batch_rows: int = LOAD_BATCH_ROWS) -> IngestReport:
        """Bulk-load PPDB Parquet exports: a file or a directory of chunks. The table is ``table`` or named by
        the file or a parent directory (``DiaSource.parquet``, ``chunk_0042/DiaObject.parquet``,
        ``DiaForcedSource/part-0.parquet``). Idempotent like every append."""
        report = IngestReport()
        for file in parquet_files(Path(path)):
            name = table or table_for(file)
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows):
                report.add(self.ingest_tables({name: pa.Table.from_batches([batch])}))
        return report

    # ------------------------------------------------------------------------------------------ reads
    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read connection with its own snapshots; close it by leaving the block."""
        con = self._con.cursor()
        try:
            yield con
        finally:
            con.close()

    def history(self, dia_object_id: int, **options: Any) -> queries.Page:
        with self.reader() as con:
            return queries.history(con, dia_object_id, limits=self.limits, **options)

    def cone(self, ra: float, dec: float, radius_arcsec: float, **options: Any) -> queries.Page:
        with self.reader() as con:
            return queries.cone(con, ra, dec, radius_arcsec, limits=self.limits, **options)

    def window(self, start_mjd: float, end_mjd: float, **options: Any) -> queries.Page:
        with self.reader() as con:
            return queries.window(con, start_mjd, end_mjd, limits=self.limits, **options)

    def prefetch(self, needs_by_filter: Mapping[str, Needs],
                 records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, tuple]]]:
        """What each filter declared it needs, for every alert of the batch, from one query (one snapshot)."""
        with self.reader() as con:
            return prefetch.prefetch(con, needs_by_filter, records, max_rows=self.prefetch_max_rows,
                                     timeout_s=self.limits.timeout_s)

    def narrow(self, shape: str, params: Mapping[str, Any], max_rows: int, timeout_s: float) -> narrow.Rows:
        """One narrow query for a filter (the relay keeps the per-filter, per-alert budget)."""
        with self.reader() as con:
            return narrow.execute(con, shape, params, max_rows=max_rows, timeout_s=timeout_s)

    def info(self) -> dict[str, Any]:
        with self.reader() as con:
            con.begin()  # one snapshot for all the counts
            recorded = dict(con.sql('SELECT "name", "value" FROM "metadata"').fetchall())
            counts = {name: con.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()[0][0]
                      for name in (*MIRRORED, "DiaObjectLast")}
            con.commit()
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "bytes": size, "built_from": recorded, "rows": counts}


def query_limits(settings: Any) -> queries.QueryLimits:
    return queries.QueryLimits(page_rows=settings.ppdb_page_rows, max_page_rows=settings.ppdb_max_page_rows,
                               max_radius_arcsec=settings.ppdb_max_cone_radius_arcsec,
                               timeout_s=settings.ppdb_query_timeout_s)


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files under {path}")
    return files


def table_for(file: Path) -> str:
    """The mirrored table a Parquet export belongs to, from its file name or a parent directory's."""
    by_lower = {name.lower(): name for name in MIRRORED}
    for part in (file.stem, *(p.name for p in file.parents)):
        if part.lower() in by_lower:
            return by_lower[part.lower()]
    raise ValueError(f"cannot tell which table {file} holds; name it (--table) as one of {', '.join(MIRRORED)}")
