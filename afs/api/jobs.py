"""Backtests: submit one over a time range, follow its progress, download the matches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse

from afs.api.deps import ActorDep, DatabaseDep, SettingsDep
from afs.api.schemas import BacktestIn, JobOut
from afs.control import filters, jobs
from afs.control.models import Job

router = APIRouter(prefix="/v1", tags=["backtests"])


def job_out(job: Job, request: Request) -> dict[str, object]:
    done = job.status == "done"
    return {
        "id": job.id, "kind": job.kind, "filter_id": job.filter_id, "version": job.version,
        "start_mjd_tai": job.start_mjd, "end_mjd_tai": job.end_mjd, "status": job.status,
        "progress": 1.0 if done else job.processed / job.total if job.total else 0.0, "total": job.total,
        "processed": job.processed, "in_range": job.in_range, "matched": job.matched, "error": job.error,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "results": {fmt: f"{request.url_for('job_results', job_id=job.id)}?format={fmt}"
                    for fmt in jobs.result_formats(job)} if done else None,
        "charged": job.bulk and job.bulk.charged, "stopped": job.bulk and job.bulk.stopped,
    }


@router.post("/filters/{filter_id}/backtests", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
def submit(filter_id: str, body: BacktestIn, request: Request, actor: ActorDep, db: DatabaseDep) -> dict[str, object]:
    """Run a version over the archived alerts whose midpointMjdTai lies in [start, end), in the background."""
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id)
        job = jobs.create_backtest(session, actor, found, body.version, body.start, body.end)
    request.app.state.jobs.wake()
    return job_out(job, request)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(request: Request, actor: ActorDep, db: DatabaseDep) -> list[dict[str, object]]:
    """Your jobs, newest first (admins: everyone's)."""
    with db.sessions() as session:
        return [job_out(job, request) for job in jobs.list_jobs(session, actor)]


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, actor: ActorDep, db: DatabaseDep) -> dict[str, object]:
    """Status and progress."""
    with db.sessions() as session:
        return job_out(jobs.visible_job(session, actor, job_id), request)


@router.get("/jobs/{job_id}/results", name="job_results", response_class=FileResponse,
            responses={200: {"content": {media: {} for media in jobs.FORMATS.values()}},
                       409: {"description": "The job is not done"}})
def results(job_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
            format: Annotated[str | None, Query(pattern="^(jsonl|parquet|tar)$")] = None) -> FileResponse:
    """A backtest's matches (jsonl, the default, or parquet): one row per match, its score and the
    alert's lightweight fields and URI. A bulk job's full alerts, in the format it was asked for."""
    with db.sessions() as session:
        job = jobs.visible_job(session, actor, job_id)
    fmt = format or jobs.result_formats(job)[0]
    return FileResponse(jobs.result_path(settings, job, fmt), media_type=jobs.FORMATS[fmt],
                        filename=f"{job.kind}-{job.id}.{fmt}")
