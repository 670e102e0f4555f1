"""Background jobs over the archived alerts of a time range: backtests and bulk downloads.

A backtest runs a filter version and writes its matches (lightweight fields and score). A bulk job
runs it the same way and writes the matched full alerts, as a tar of Avro wire-format files or one
Parquet file of decoded records, charging each alert to the owner's daily full-alert quota as it is
written and stopping, with the reason, when the quota is spent (partial results stay downloadable).

Jobs are rows in the control-plane database; a runner thread in each API process claims queued
ones with a conditional UPDATE (so several API processes can share the work), reports progress as
it goes and writes the matches as JSON lines and Parquet under ``AFS_JOBS_DIR``. A running job
whose heartbeat stops (its process died) is marked failed for the user to resubmit.
"""

from __future__ import annotations

import io
import json
import logging
import math
import secrets
import threading
import tarfile
import warnings
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sandbox import FilterSpec
from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from afs.alerts import lightweight
from afs.alerts.codec import AlertCodec, DecodedAlert
from afs.alerts.schemas import SchemaStore, latest_schema_id
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.db import Database
from afs.control.errors import Conflict, Invalid, NotFound
from afs.control.filters import version_of
from afs.control.models import BulkJob, Filter, FilterVersion, Job, User, utcnow
from afs.control.users import Actor
from afs.filtering import FilterEngine, sandbox_limits

if TYPE_CHECKING:
    from afs.quotas import QuotaEngine

log = logging.getLogger(__name__)
FORMATS = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet", "tar": "application/x-tar"}
KIND_FORMATS = {"backtest": ("jsonl", "parquet"), "bulk": ("tar", "parquet")}
STALE_AFTER = timedelta(minutes=2)
_ARROW_TYPES = {"long": pa.int64(), "int": pa.int32(), "double": pa.float64(), "float": pa.float32(),
                "string": pa.string()}


def mjd_tai(moment: datetime) -> float:
    """MJD in TAI (the alerts' time scale) of a datetime; naive datetimes are UTC."""
    from astropy.time import Time
    from erfa import ErfaWarning

    with warnings.catch_warnings():  # "dubious year": leap seconds after the table's end are unknown, not wrong
        warnings.simplefilter("ignore", ErfaWarning)
        return float(Time(moment if moment.tzinfo else moment.replace(tzinfo=UTC), scale="utc").tai.mjd)


def create_backtest(session: Session, actor: Actor, found: Filter, number: int | None, start: datetime,
                    end: datetime, bulk_format: str | None = None) -> Job:
    """A queued job; with ``bulk_format`` (tar or parquet) a bulk download of the matched full alerts."""
    if end <= start:
        raise Invalid("the end of the time range must be after its start")
    version = version_of(session, found, number)
    job = Job(id=secrets.token_hex(8), owner_id=actor.user.id, filter_id=found.id, version=version.number,
              start_mjd=mjd_tai(start), end_mjd=mjd_tai(end))
    job.bulk = None if bulk_format is None else BulkJob(job_id=job.id, format=bulk_format)  # loaded: job_out reads it
    session.add(job)
    session.flush()
    return job


def visible_job(session: Session, actor: Actor, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or not actor.may_see(job.owner_id):
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(session: Session, actor: Actor) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc())
    return list(session.scalars(query if actor.is_admin else query.where(Job.owner_id == actor.user.id)))


def result_path(settings: Settings, job: Job, fmt: str) -> Path:
    if fmt not in result_formats(job):
        raise Invalid(f"format must be one of {', '.join(result_formats(job))}")
    if job.status != "done":
        raise Conflict(f"job {job.id} is {job.status}; results are there once it is done")
    return settings.jobs_dir / f"{job.id}.{fmt}"


def result_formats(job: Job) -> tuple[str, ...]:
    """What a finished job can be downloaded as: a backtest's matches, or a bulk job's one format."""
    return (job.bulk.format,) if job.bulk else KIND_FORMATS["backtest"]


def claim_next(db: Database) -> str | None:
    """Take the oldest queued job, atomically (another runner may be looking at the same row)."""
    now = utcnow()
    with db.transaction() as session:
        session.execute(update(Job).where(Job.status == "running", Job.heartbeat_at < now - STALE_AFTER)
                        .values(status="failed", error="interrupted (its process stopped); submit it again",
                                finished_at=now))
        for job_id in session.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.created_at).limit(5)):
            claimed = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                                      .values(status="running", started_at=now, heartbeat_at=now))
            if claimed.rowcount == 1:
                return job_id
    return None


def _job_update(job_id: str, **values: Any) -> Update:
    """The job's row with new values and a fresh heartbeat."""
    return update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow(), **values)


def _progress(db: Database, job_id: str, **values: Any) -> None:
    with db.transaction() as session:
        session.execute(_job_update(job_id, **values))


def _row(alert: DecodedAlert, score: float, base_url: str) -> dict[str, Any]:
    """One match: its score and the alert's lightweight packet (DMTN-165 fields and permanent URI)."""
    packet = lightweight.build(alert.record, alert.dia_source_id, alert.schema_id, base_url)
    return {"score": score} | {k: None if isinstance(v, float) and not math.isfinite(v) else v
                               for k, v in packet.items()}


def _result_schema() -> pa.Schema:
    """The rows' Arrow schema, derived from the lightweight packet's Avro schema."""
    fields = [pa.field("score", pa.float64(), nullable=False)]
    for field in lightweight.SCHEMA["fields"]:
        kind = field["type"]
        fields.append(pa.field(field["name"], _ARROW_TYPES[kind[-1] if isinstance(kind, list) else kind],
                               nullable=isinstance(kind, list)))
    return pa.schema(fields)


Match = tuple[DecodedAlert, bytes, float]  # the decoded alert, its wire bytes, the score


def _matches(settings: Settings, db: Database, job_id: str) -> Iterator[list[Match]]:
    """The job's filter version over the archived alerts in its range: per archive batch, the matches,
    progress reported as it goes. Closing the generator early stops the run."""
    with db.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        version = session.scalar(select(FilterVersion).where(FilterVersion.filter_id == job.filter_id,
                                                             FilterVersion.number == job.version))
        owner = session.get(User, job.owner_id)
        assert version is not None and owner is not None
    archive = AlertArchive(settings.archive_dir)
    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    engine = FilterEngine(sandbox_limits(settings))
    try:
        rejected = engine.activate([FilterSpec(job.filter_id, owner.name, version.source)])
        if rejected:
            raise RuntimeError(f"the filter was refused: {rejected[job.filter_id]}")
        ids = archive.ids()
        _progress(db, job_id, total=len(ids))
        in_range = matched = 0
        for start in range(0, len(ids), settings.batch_size):
            chunk = ids[start:start + settings.batch_size]
            pairs = [(codec.decode(data), data) for data in map(archive.get, chunk) if data is not None]
            pairs = [(a, data) for a, data in pairs if job.start_mjd <= (a.record.get("diaSource") or {}).get(
                "midpointMjdTai", float("nan")) < job.end_mjd]
            in_range += len(pairs)
            result = engine.run([a.record for a, _ in pairs])
            outcome = result.outcomes[job.filter_id] if result else None
            found = [(*pairs[index], score) for index, score in (outcome.matches if outcome else ())]
            if outcome and outcome.disabled:
                raise RuntimeError(f"the sandbox disabled the filter: {outcome.disabled} "
                                   f"(diaSourceId {outcome.offending_id})")
            matched += len(found)
            _progress(db, job_id, processed=start + len(chunk), in_range=in_range, matched=matched)
            yield found
    finally:
        engine.close()
        archive.close()


def run_backtest(settings: Settings, db: Database, job_id: str) -> None:
    """Run one claimed job to the end; it finishes done or failed, with the reason."""
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        with open(settings.jobs_dir / f"{job_id}.jsonl", "w", encoding="utf-8") as out:
            for matches in _matches(settings, db, job_id):
                for alert, _, score in matches:
                    row = _row(alert, score, settings.public_base_url)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
        pq.write_table(pa.Table.from_pylist(rows, schema=_result_schema()), settings.jobs_dir / f"{job_id}.parquet")
        _progress(db, job_id, status="done", finished_at=utcnow())
    except Exception as error:
        log.exception("backtest %s failed", job_id)
        _progress(db, job_id, status="failed", error=str(error), finished_at=utcnow())


def _arrow_type(avro: Any, named: dict[str, pa.DataType]) -> pa.DataType:
    """The Arrow type of an Avro type (alert schemas: primitives, records, arrays, [null, T] unions)."""
    if isinstance(avro, list):
        (inner,) = [t for t in avro if t != "null"]
        return _arrow_type(inner, named)
    if isinstance(avro, str):
        return named[avro] if avro in named else {"boolean": pa.bool_(), "bytes": pa.binary(),
                                                  **_ARROW_TYPES}[avro]
    if avro.get("logicalType") == "timestamp-micros":
        return pa.timestamp("us", tz="UTC")
    if avro["type"] == "array":
        return pa.list_(_arrow_type(avro["items"], named))
    if avro["type"] == "record":
        struct = pa.struct([pa.field(f["name"], _arrow_type(f["type"], named)) for f in avro["fields"]])
        named[avro["name"]] = struct
        if "namespace" in avro:
            named[f"{avro['namespace']}.{avro['name']}"] = struct
        return struct
    return _arrow_type(avro["type"], named)


def _alert_schema(schema_id: int) -> pa.Schema:
    """Bulk Parquet columns: the alert schema's fields, all nullable (older versions lack some)."""
    struct = _arrow_type(json.loads(SchemaStore().schema_json(schema_id)), {})
    return pa.schema([pa.field("score", pa.float64()), *struct])


class _BulkWriter:
    """Writes matched full alerts as a tar of ``{diaSourceId}.avro`` wire-format files, or as Parquet."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.tar = tarfile.open(path, "w") if fmt == "tar" else None
        self.parquet: pq.ParquetWriter | None = None

    def write(self, matches: list[Match]) -> None:
        if self.tar is not None:
            for alert, wire, _ in matches:
                info = tarfile.TarInfo(f"{alert.dia_source_id}.avro")
                info.size, info.mtime = len(wire), int(utcnow().timestamp())
                self.tar.addfile(info, io.BytesIO(wire))
            return
        if not matches:
            return
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.path, _alert_schema(matches[0][0].schema_id))
        rows = [{"score": score} | alert.record for alert, _, score in matches]
        self.parquet.write_table(pa.Table.from_pylist(rows, schema=self.parquet.schema))

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
        elif self.parquet is not None:
            self.parquet.close()
        else:  # nothing matched: still one valid (empty) Parquet file
            pq.write_table(_alert_schema(latest_schema_id()).empty_table(), self.path)


def run_bulk(settings: Settings, db: Database, quotas: QuotaEngine, job_id: str) -> None:
    """Write the matched full alerts, charging each to the owner's daily quota; stop when it is spent."""
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    with db.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.bulk is not None
        owner_id, filter_id, fmt = job.owner_id, job.filter_id, job.bulk.format
    charged, stopped = 0, None
    try:
        writer = _BulkWriter(settings.jobs_dir / f"{job_id}.{fmt}", fmt)
        try:
            with closing(_matches(settings, db, job_id)) as batches:
                for matches in batches:
                    granted = quotas.charge_up_to(owner_id, "alerts", len(matches), filter_id) if matches else 0
                    writer.write(matches[:granted])
                    charged += granted
                    if granted < len(matches):
                        stopped = (f"your daily full-alert quota ran out after {charged} alerts; the rest were "
                                   "not written (it resets at 00:00 UTC)")
                        break
        finally:
            writer.close()
        ended: dict[str, Any] = {"status": "done"}
    except Exception as error:
        log.exception("bulk job %s failed", job_id)
        ended = {"status": "failed", "error": str(error)}
    with db.transaction() as session:  # one commit: a job seen done already shows what it charged
        session.execute(update(BulkJob).where(BulkJob.job_id == job_id).values(charged=charged, stopped=stopped))
        session.execute(_job_update(job_id, finished_at=utcnow(), **ended))


class JobRunner:
    """A thread that runs queued jobs one at a time; ``wake`` after queueing one to start it at once."""

    def __init__(self, settings: Settings, db: Database, poll_s: float = 2.0,
                 quotas: QuotaEngine | None = None) -> None:
        self.settings = settings
        self.db = db
        self.quotas = quotas  # charged by bulk jobs
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="afs-jobs", daemon=True)

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self, job_id: str) -> None:
        with self.db.sessions() as session:
            job = session.get(Job, job_id)
            bulk = job is not None and job.bulk is not None
        if bulk:
            assert self.quotas is not None, "bulk jobs need the quota engine"
            run_bulk(self.settings, self.db, self.quotas, job_id)
        else:
            run_backtest(self.settings, self.db, job_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and (job_id := claim_next(self.db)) is not None:
                    self._run(job_id)
            except Exception:  # the database away: try again at the next poll
                log.exception("job runner")
            self._wake.wait(self.poll_s)
            self._wake.clear()
