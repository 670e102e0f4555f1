"""Backtests: a filter version over the archived alerts of a time range, as a background job.

Jobs are rows in the control-plane database; a runner thread in each API process claims queued
ones with a conditional UPDATE (so several API processes can share the work), reports progress as
it goes and writes the matches as JSON lines and Parquet under ``AFS_JOBS_DIR``. A running job
whose heartbeat stops (its process died) is marked failed for the user to resubmit.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sandbox import FilterSpec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from afs.alerts import lightweight
from afs.alerts.codec import AlertCodec, DecodedAlert
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.db import Database
from afs.control.errors import Conflict, Invalid, NotFound
from afs.control.filters import version_of
from afs.control.models import Filter, FilterVersion, Job, User, utcnow
from afs.control.users import Actor
from afs.filtering import FilterEngine, sandbox_limits

log = logging.getLogger(__name__)
FORMATS = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
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
                    end: datetime) -> Job:
    if end <= start:
        raise Invalid("the end of the time range must be after its start")
    version = version_of(session, found, number)
    job = Job(id=secrets.token_hex(8), owner_id=actor.user.id, filter_id=found.id, version=version.number,
              start_mjd=mjd_tai(start), end_mjd=mjd_tai(end))
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
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}")
    if job.status != "done":
        raise Conflict(f"job {job.id} is {job.status}; results are there once it is done")
    return settings.jobs_dir / f"{job.id}.{fmt}"


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


def _progress(db: Database, job_id: str, **values: Any) -> None:
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow(), **values))


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


def run_backtest(settings: Settings, db: Database, job_id: str) -> None:
    """Run one claimed job to the end; it finishes done or failed, with the reason."""
    with db.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        version = session.scalar(select(FilterVersion).where(FilterVersion.filter_id == job.filter_id,
                                                             FilterVersion.number == job.version))
        owner = session.get(User, job.owner_id)
        assert version is not None and owner is not None
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    archive = AlertArchive(settings.archive_dir)
    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    engine = FilterEngine(sandbox_limits(settings))
    rows: list[dict[str, Any]] = []
    try:
        rejected = engine.activate([FilterSpec(job.filter_id, owner.name, version.source)])
        if rejected:
            raise RuntimeError(f"the filter was refused: {rejected[job.filter_id]}")
        ids = archive.ids()
        _progress(db, job_id, total=len(ids))
        in_range = 0
        with open(settings.jobs_dir / f"{job_id}.jsonl", "w", encoding="utf-8") as out:
            for start in range(0, len(ids), settings.batch_size):
                chunk = ids[start:start + settings.batch_size]
                alerts = [codec.decode(data) for data in map(archive.get, chunk) if data is not None]
                alerts = [a for a in alerts if job.start_mjd <= (a.record.get("diaSource") or {}).get(
                    "midpointMjdTai", float("nan")) < job.end_mjd]
                in_range += len(alerts)
                result = engine.run([a.record for a in alerts])
                outcome = result.outcomes[job.filter_id] if result else None
                for index, score in (outcome.matches if outcome else ()):
                    row = _row(alerts[index], score, settings.public_base_url)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                if outcome and outcome.disabled:
                    raise RuntimeError(f"the sandbox disabled the filter: {outcome.disabled} "
                                       f"(diaSourceId {outcome.offending_id})")
                _progress(db, job_id, processed=start + len(chunk), in_range=in_range, matched=len(rows))
        pq.write_table(pa.Table.from_pylist(rows, schema=_result_schema()), settings.jobs_dir / f"{job_id}.parquet")
        _progress(db, job_id, status="done", finished_at=utcnow())
    except Exception as error:
        log.exception("backtest %s failed", job_id)
        _progress(db, job_id, status="failed", error=str(error), finished_at=utcnow())
    finally:
        engine.close()
        archive.close()


class JobRunner:
    """A thread that runs queued jobs one at a time; ``wake`` after queueing one to start it at once."""

    def __init__(self, settings: Settings, db: Database, poll_s: float = 2.0) -> None:
        self.settings = settings
        self.db = db
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

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and (job_id := claim_next(self.db)) is not None:
                    run_backtest(self.settings, self.db, job_id)
            except Exception:  # the database away: try again at the next poll
                log.exception("job runner")
            self._wake.wait(self.poll_s)
            self._wake.clear()
