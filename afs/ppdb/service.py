"""The mirror's owner as a service, and the client every other process uses (see afs.ppdb.mirror).

``afs ppdb serve`` runs a Mirror behind an Arrow Flight server; ``MirrorClient`` has the Mirror's methods and
calls them there. A call is one Flight action: the request and the answer are a little JSON plus named Arrow
tables, so rows cross the process boundary as Arrow, not as Python objects. Only the operations in OPS can
be called; their arguments go through the same checks as in-process calls. Errors come back in-band and are
raised again as the same exception types.

The server has no authentication of its own: bind it to 127.0.0.1 or a Unix socket (the default), or put
it on a private network; Flight's TLS and auth handlers are the place to add more.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from afs.ppdb import narrow, prefetch, queries, rows
from afs.ppdb.mirror import IngestReport, Mirror, SchemaMismatch
from afs.ppdb.needs import Need, NeedsError, validate_needs

log = logging.getLogger(__name__)
ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    queries.QueryError, queries.QueryTimeout, narrow.NarrowLimitExceeded, NeedsError, SchemaMismatch,
    ValueError, FileNotFoundError)}
PAGE_OPS = {"history": (1, ("table", "columns", "start_mjd", "end_mjd", "cursor", "limit")),
            "cone": (3, ("table", "columns", "cursor", "limit")),
            "window": (2, ("table", "columns", "cursor", "limit"))}  # op -> (positional count, options)


# ------------------------------------------------------------------------------------------ wire format
def pack(args: Mapping[str, Any], tables: Mapping[str, pa.Table] | None = None) -> bytes:
    """JSON header (args and table names) followed by each table as an Arrow IPC stream, length-prefixed."""
    tables = tables or {}
    header = json.dumps({"args": args, "tables": list(tables)}).encode()
    parts = [struct.pack(">I", len(header)), header]
    for table in tables.values():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        body = sink.getvalue()
        parts += [struct.pack(">Q", body.size), body.to_pybytes()]
    return b"".join(parts)


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    (size,) = struct.unpack_from(">I", data)
    header = json.loads(data[4:4 + size])
    offset, tables = 4 + size, {}
    for name in header["tables"]:
        (length,) = struct.unpack_from(">Q", data, offset)
        offset += 8
        tables[name] = pa.ipc.open_stream(pa.py_buffer(data[offset:offset + length])).read_all()
        offset += length
    return header["args"], tables


def needs_to_wire(needs: Mapping[str, Need]) -> dict[str, dict[str, Any]]:
    return {kind: {k: v for k, v in asdict(need).items() if k != "kind"} for kind, need in needs.items()}


def needs_from_wire(data: Mapping[str, Mapping[str, Any]], max_rows: int) -> dict[str, Need]:
    """Merged needs sent by a client, checked again here (their column names reach SQL as identifiers)."""
    options = {kind: {k: v for k, v in need.items() if k in ("days", "nights", "radius_arcsec", "columns")
                      and v is not None} for kind, need in data.items()}
    checked = validate_needs(options)
    return {kind: Need(**{**asdict(need), "max_rows": max_rows}) for kind, need in checked.items()}


# ------------------------------------------------------------------------------------------ server
class MirrorServer(flight.FlightServerBase):
    """Serves one Mirror to other processes; the Mirror stays the file's only connection."""

    def __init__(self, mirror: Mirror, location: str) -> None:
        super().__init__(location)
        self.mirror = mirror

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterable[flight.Result]:
        try:
            args, tables = unpack(action.body.to_pybytes())
            handler = getattr(self, f"_op_{action.type}", None)
            if handler is None:
                raise ValueError(f"unknown operation {action.type!r}")
            answer = handler(args, tables)
        except tuple(ERRORS.values()) as error:
            answer = pack({"error": type(error).__name__, "message": str(error)})
        yield flight.Result(pa.py_buffer(answer))

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve, name="ppdb-flight", daemon=True)
        thread.start()
        return thread

    def _op_ingest_tables(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        return pack(self.mirror.ingest_tables(tables).as_dict())

    def _op_known_keys(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        return pack({}, {"keys": self.mirror.known_keys(args["table"], tables["keys"])})

    def _op_load_parquet(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        return pack(self.mirror.load_parquet(args["path"], args.get("table")).as_dict())

    def _op_page(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        op, positional, options = args.get("op"), args.get("args"), args.get("options")
        if op not in PAGE_OPS:
            raise queries.QueryError(f"unknown query {op!r}")
        count, allowed = PAGE_OPS[op]
        if not isinstance(positional, list) or len(positional) != count or not isinstance(options, dict):
            raise queries.QueryError(f"{op} takes {count} arguments and a dict of options")
        unknown = set(options) - set(allowed)
        if unknown:
            raise queries.QueryError(f"{op} has no option {sorted(unknown)[0]!r}")
        page = getattr(self.mirror, op)(*positional, **options)
        return pack({"next_cursor": page.next_cursor}, {"rows": page.table})

    def _op_fetch(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        merged = needs_from_wire(args["needs"], min(args["max_rows"], self.mirror.prefetch_max_rows))
        with self.mirror.reader() as con:
            fetched = prefetch.fetch(con, merged, tables["alerts"], self.mirror.limits.timeout_s)
        return pack({}, {"fetched": fetched})

    def _op_narrow(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        max_rows = min(queries.as_int("max_rows", args.get("max_rows")), self.mirror.prefetch_max_rows)
        timeout_s = min(queries.as_float("timeout_s", args.get("timeout_s"), 0.0), self.mirror.limits.timeout_s)
        found = self.mirror.narrow(args.get("shape"), args.get("params"), max(max_rows, 0), timeout_s)
        return pack({"rows": list(found)})

    def _op_info(self, args: dict, tables: dict[str, pa.Table]) -> bytes:
        return pack(self.mirror.info())


# ------------------------------------------------------------------------------------------ client
class MirrorClient:
    """The Mirror's methods, called on its owner over Flight. Safe to share between threads."""

    def __init__(self, url: str, prefetch_max_rows: int = prefetch.DEFAULT_MAX_ROWS) -> None:
        self.url = url
        self.prefetch_max_rows = prefetch_max_rows
        self._client = flight.connect(url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MirrorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, op: str, args: Mapping[str, Any], tables: Mapping[str, pa.Table] | None = None
              ) -> tuple[dict[str, Any], dict[str, pa.Table]]:
        return self._send(op, pack(args, tables))

    def _send(self, op: str, request: bytes) -> tuple[dict[str, Any], dict[str, pa.Table]]:
        results = list(self._client.do_action(flight.Action(op, request)))
        answer, answer_tables = unpack(results[0].body.to_pybytes())
        if "error" in answer:
            raise ERRORS[answer["error"]](answer["message"])
        return answer, answer_tables

    def ingest_alerts(self, records: Iterable[Mapping[str, Any]]) -> IngestReport:
        new, known = rows.alert_tables(records, self.known_keys)
        report = self.ingest_tables(new)
        report.known.update(known)
        return report

    def ingest_tables(self, tables: Mapping[str, pa.Table]) -> IngestReport:
        return IngestReport.from_dict(self._call("ingest_tables", {}, tables)[0])

    def known_keys(self, table: str, keys: pa.Table) -> pa.Table:
        return self._call("known_keys", {"table": table}, {"keys": keys})[1]["keys"]

    def load_parquet(self, path: str, table: str | None = None) -> IngestReport:
        """Loads a path on the owner's machine."""
        return IngestReport.from_dict(self._call("load_parquet", {"path": str(path), "table": table})[0])

    def _page(self, op: str, args: Sequence[Any], options: Mapping[str, Any]) -> queries.Page:
        answer, tables = self._call("page", {"op": op, "args": list(args), "options": dict(options)})
        return queries.Page(tables["rows"], answer["next_cursor"])

    def history(self, dia_object_id: int, **options: Any) -> queries.Page:
        return self._page("history", [dia_object_id], options)

    def cone(self, ra: float, dec: float, radius_arcsec: float, **options: Any) -> queries.Page:
        return self._page("cone", [ra, dec, radius_arcsec], options)

    def window(self, start_mjd: float, end_mjd: float, **options: Any) -> queries.Page:
        return self._page("window", [start_mjd, end_mjd], options)

    def prefetch(self, needs_by_filter: Mapping[str, Mapping[str, Need]],
                 records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, prefetch.Rows]]]:
        alerts = prefetch.alert_keys(records)
        merged = prefetch.merge(needs_by_filter, self.prefetch_max_rows)
        fetched = None
        if merged and len(records):
            args = {"needs": needs_to_wire(merged), "max_rows": self.prefetch_max_rows}
            fetched = self._call("fetch", args, {"alerts": alerts})[1]["fetched"]
        return prefetch.distribute(needs_by_filter, fetched, alerts, merged)

    def narrow(self, shape: str, params: Mapping[str, Any], max_rows: int, timeout_s: float) -> narrow.Rows:
        try:
            request = pack({"shape": shape, "params": dict(params), "max_rows": max_rows, "timeout_s": timeout_s})
        except (TypeError, ValueError) as error:  # what a filter passed is not plain data
            raise queries.QueryError(f"narrow query parameters must be numbers, strings and lists: {error}") from None
        return tuple(self._send("narrow", request)[0]["rows"])

    def info(self) -> dict[str, Any]:
        return self._call("info", {})[0]


def connect(settings: Any, read_only: bool = False) -> Mirror | MirrorClient:
    """The mirror for a short-lived process (the CLI): the owner's client when AFS_PPDB_URL is set or the
    file is held by its owner, else the file itself (read-only opens let several readers share it)."""
    if settings.ppdb_url:
        return MirrorClient(settings.ppdb_url, settings.ppdb_prefetch_max_rows)
    try:
        return Mirror.from_settings(settings, read_only=read_only)
    except duckdb.IOException:  # locked: its owner is running here
        return MirrorClient(settings.ppdb_owner_url(), settings.ppdb_prefetch_max_rows)


class Owner:
    """The stream worker's mirror: its client when AFS_PPDB_URL names an owner elsewhere or another process
    on this host already owns the file, else the file itself, served to this host's other processes at
    AFS_PPDB_LISTEN (the embedded default: the first worker owns the mirror; the API, the CLI and further
    workers ask it)."""

    def __init__(self, settings: Any) -> None:
        self.server: MirrorServer | None = None
        client = MirrorClient(settings.ppdb_owner_url(), settings.ppdb_prefetch_max_rows)
        if settings.ppdb_url:
            self.mirror: Mirror | MirrorClient = client
            return
        try:
            self.mirror = Mirror.from_settings(settings)
        except duckdb.IOException:  # locked: its owner runs here
            log.info("%s is owned by another process; using it at %s", settings.ppdb_path, client.url)
            self.mirror = client
            return
        client.close()
        address = settings.ppdb_listen_address()
        if address.startswith("grpc+unix://"):
            Path(address.removeprefix("grpc+unix://")).unlink(missing_ok=True)  # left by a killed owner
        self.server = MirrorServer(self.mirror, address)
        self.server.serve_in_thread()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.mirror.close()


def narrow_limits(settings: Any) -> narrow.NarrowLimits:
    return narrow.NarrowLimits(settings.ppdb_narrow_max_calls, settings.ppdb_narrow_max_rows,
                               settings.ppdb_narrow_max_seconds)
