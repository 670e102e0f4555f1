"""Filters: upload (compile + dry run), versions, activation with its gate, dry runs, stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from afs.api.deps import ActorDep, AdminDep, DatabaseDep, SamplesDep, SettingsDep
from afs.api.schemas import (ActivateIn, DryRunIn, DryRunReport, FilterOut, FilterStatsOut, FilterUpload,
                             GateOverride, Uploaded, VersionDetail, VersionOut)
from afs.config import Settings
from afs.control import filters
from afs.control.dry_run import compile_upload, dry_run
from afs.control.models import Filter, FilterVersion, User

router = APIRouter(prefix="/v1", tags=["filters"])


def _names(session: Session, ids: set[int]) -> dict[int, User]:
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


def filter_out(session: Session, found: Filter, settings: Settings, owners: dict[int, User] | None = None) -> dict:
    owner = (owners or _names(session, {found.owner_id}))[found.owner_id]
    disabled = None if found.disabled_reason is None else {
        "reason": found.disabled_reason, "dia_source_id": found.disabled_dia_source_id, "at": found.disabled_at}
    moderation = found.moderation and {"disabled": found.moderation.disabled, "reason": found.moderation.reason,
                                       "by": found.moderation.by, "at": found.moderation.at}
    by_admin = bool(moderation and moderation["disabled"])  # stopped whether or not it was active
    state = ("disabled" if by_admin else "inactive" if found.active_version is None
             else "disabled" if disabled else "active")
    return {"id": found.id, "name": found.name, "description": found.description, "owner": owner.name,
            "predefined": owner.builtin, "topic": settings.filter_topic(found.id), "status": state,
            "active_version": found.active_version, "latest_version": found.latest_version,
            "gate_override": found.gate_override, "disabled": disabled, "moderation": moderation,
            "created_at": found.created_at, "updated_at": found.updated_at}


def version_out(session: Session, version: FilterVersion, with_source: bool = False) -> dict[str, Any]:
    author = session.get(User, version.created_by)
    out = {"version": version.number, "name": version.name, "description": version.description,
           "reads": version.reads, "sha256": version.sha256, "created_at": version.created_at,
           "created_by": author.name if author else "?", "dry_run": version.dry_run}
    return out | {"source": version.source} if with_source else out


@router.get("/filters", response_model=list[FilterOut])
def list_filters(actor: ActorDep, db: DatabaseDep, settings: SettingsDep) -> list[dict]:
    """Your filters and the predefined ones (admins: every filter)."""
    with db.sessions() as session:
        found = filters.list_filters(session, actor)
        owners = _names(session, {f.owner_id for f in found})
        return [filter_out(session, f, settings, owners) for f in found]


@router.post("/filters", response_model=Uploaded, status_code=status.HTTP_201_CREATED,
             responses={422: {"description": "The filter does not compile: every problem with line, column, reason"}})
def upload(body: FilterUpload, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
           samples: SamplesDep) -> dict:
    """Compile in the sandbox, dry-run on the reference sample, store as version 1 (inactive)."""
    info = compile_upload(body.source, body.name)
    report = dry_run(settings, samples, body.source, info)
    with db.transaction() as session:
        found, version = filters.create_filter(session, actor.user, body.source, info, report)
        return {"filter": filter_out(session, found, settings), "version": version_out(session, version)}


@router.post("/dry-run", response_model=DryRunReport,
             responses={422: {"description": "The filter does not compile: every problem with line, column, reason"}})
def dry_run_source(body: FilterUpload, _: ActorDep, settings: SettingsDep, samples: SamplesDep) -> dict:
    """Compile and dry-run a source without storing anything: the edit-and-test loop."""
    return dry_run(settings, samples, body.source, compile_upload(body.source, body.name))


@router.get("/filters/{filter_id}", response_model=FilterOut)
def get_filter(filter_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep) -> dict:
    with db.sessions() as session:
        return filter_out(session, filters.visible_filter(session, actor, filter_id), settings)


@router.put("/filters/{filter_id}", response_model=Uploaded,
            responses={422: {"description": "The filter does not compile: every problem with line, column, reason"}})
def update(filter_id: str, body: FilterUpload, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
           samples: SamplesDep) -> dict:
    """A new immutable version (renames too: the name is NAME in the source, else the name given).
    The active version does not change until you activate the new one."""
    with db.sessions() as session:  # refuse before the dry run's cost; checked again when writing
        filters.visible_filter(session, actor, filter_id, change=True)
    info = compile_upload(body.source, body.name)
    report = dry_run(settings, samples, body.source, info)
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id, change=True)
        version = filters.add_version(session, found, actor.user, body.source, info, report)
        return {"filter": filter_out(session, found, settings), "version": version_out(session, version)}


@router.delete("/filters/{filter_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(filter_id: str, actor: ActorDep, db: DatabaseDep) -> Response:
    """Stop and remove the filter (soft: versions and stats are kept, the topic name stays reserved)."""
    with db.transaction() as session:
        filters.delete(session, filters.visible_filter(session, actor, filter_id, change=True))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/filters/{filter_id}/versions", response_model=list[VersionOut])
def versions(filter_id: str, actor: ActorDep, db: DatabaseDep) -> list[dict]:
    with db.sessions() as session:
        found = filters.visible_filter(session, actor, filter_id)
        return [version_out(session, v) for v in filters.versions_of(session, found)]


@router.get("/filters/{filter_id}/versions/{version}", response_model=VersionDetail)
def version(filter_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], actor: ActorDep,
            db: DatabaseDep) -> dict:
    with db.sessions() as session:
        found = filters.visible_filter(session, actor, filter_id)
        return version_out(session, filters.version_of(session, found, version), with_source=True)


@router.post("/filters/{filter_id}/activate", response_model=FilterOut,
             responses={409: {"description": "Refused by the activation gate, with the reason"}})
def activate(filter_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
             body: ActivateIn | None = None) -> dict:
    """Run this version from the next visit on (workers pick it up within AFS_FILTER_RELOAD_S).
    Refused when its dry run matched more than AFS_ACTIVATION_MAX_MATCH_RATE of the reference sample."""
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id, change=True)
        filters.activate(session, found, body.version if body else None, settings.activation_max_match_rate)
        return filter_out(session, found, settings)


@router.post("/filters/{filter_id}/deactivate", response_model=FilterOut)
def deactivate(filter_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep) -> dict:
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id, change=True)
        filters.deactivate(session, found)
        return filter_out(session, found, settings)


@router.put("/filters/{filter_id}/gate-override", response_model=FilterOut)
def gate_override(filter_id: str, body: GateOverride, actor: AdminDep, db: DatabaseDep,
                  settings: SettingsDep) -> dict:
    """Admins: let this filter's versions past the match-rate gate (or stop doing so)."""
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id, change=True)
        filters.set_gate_override(session, found, body.override)
        return filter_out(session, found, settings)


@router.post("/filters/{filter_id}/dry-run", response_model=DryRunReport)
def dry_run_version(filter_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
                    samples: SamplesDep, body: DryRunIn | None = None) -> dict:
    """Dry-run a stored version on today's reference sample (the stored upload result is unchanged)."""
    with db.sessions() as session:
        found = filters.visible_filter(session, actor, filter_id)
        stored = filters.version_of(session, found, body.version if body else None)
    return dry_run(settings, samples, stored.source, compile_upload(stored.source, stored.name))


@router.get("/filters/{filter_id}/stats", response_model=FilterStatsOut)
def stats(filter_id: str, actor: ActorDep, db: DatabaseDep) -> dict:
    """What the workers counted: alerts seen, matched, delivered, withheld by the cap, errors, CPU..."""
    with db.sessions() as session:
        return {"filter_id": filter_id} | filters.stats_of(session, filters.visible_filter(session, actor, filter_id))
