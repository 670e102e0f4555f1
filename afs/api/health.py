"""Health for people and orchestrators, all public: ``/health`` (does the database answer),
``/healthz`` (liveness: the process serves requests), ``/readyz`` (readiness: the control-plane
database and the quota store answer; the PPDB mirror is reported but not required, since only the PPDB
endpoints need it) and Prometheus ``/metrics`` (afs.metrics). The last three are for orchestrators and
Prometheus, so they stay out of the scientists' OpenAPI document."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from afs.api.deps import DatabaseDep, SettingsDep
from afs.api.schemas import Health
from afs.metrics import API_METRICS, probe_database, probe_ppdb, probe_redis

router = APIRouter(tags=["public"])


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str  # "ready" or "not ready"
    checks: dict[str, str]  # "ok", or why not


@router.get("/health", response_model=Health)
def health(db: DatabaseDep, response: Response) -> dict[str, str]:
    outcome = probe_database(db)
    if outcome != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "degraded", "database": outcome}
    return {"status": "ok", "database": db.dialect}


@router.get("/healthz", response_model=Liveness, include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, include_in_schema=False)
async def readyz(db: DatabaseDep, settings: SettingsDep, response: Response) -> dict[str, object]:
    probes = {"database": asyncio.to_thread(probe_database, db),
              "ppdb": asyncio.to_thread(probe_ppdb, settings.ppdb_owner_url())}
    if settings.quota_redis_url:
        probes["quotas"] = asyncio.to_thread(probe_redis, settings.quota_redis_url)
    checks = dict(zip(probes, await asyncio.gather(*probes.values())))
    ready = all(outcome == "ok" for name, outcome in checks.items() if name != "ppdb")
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ready else "not ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(API_METRICS), media_type=CONTENT_TYPE_LATEST)
