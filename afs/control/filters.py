"""Filters and their versions: who sees them, upload, activation and its gate, deletion, stats.

Every change of code is a new immutable version; the filter's id (and so its output topic) never
changes. The predefined filters (``AFS_FILTERS_DIR``) are filters of a built-in user, readable by
everyone and changed only by admins.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox import FilterInfo, FilterRejected
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from afs.control.db import Database
from afs.control.errors import Conflict, Forbidden, NotFound
from afs.control.models import Filter, FilterModeration, FilterStats, FilterVersion, FilterVisit, User, utcnow
from afs.control.users import Actor, create_user
from afs.filtering import PREDEFINED_OWNER, check_filter, load_filter_dir

log = logging.getLogger(__name__)
RECENT_VISITS = 20


def builtin_ids(session: Session) -> set[int]:
    return set(session.scalars(select(User.id).where(User.builtin)))


def visible_filter(session: Session, actor: Actor, filter_id: str, *, change: bool = False) -> Filter:
    """A live filter the actor may see; ``change``: and may change (else Forbidden)."""
    found = session.get(Filter, filter_id)
    if found is None or found.deleted_at is not None:
        raise NotFound(f"no filter {filter_id!r}")
    if actor.may_see(found.owner_id):
        return found
    if found.owner_id in builtin_ids(session):
        if change:
            raise Forbidden(f"filter {filter_id!r} is predefined: only admins change it")
        return found
    raise NotFound(f"no filter {filter_id!r}")


def list_filters(session: Session, actor: Actor) -> list[Filter]:
    """Admins: every live filter. Users: their own and the predefined ones."""
    query = select(Filter).where(Filter.deleted_at.is_(None)).order_by(Filter.created_at, Filter.id)
    if not actor.is_admin:
        query = query.where(or_(Filter.owner_id == actor.user.id,
                                Filter.owner_id.in_(select(User.id).where(User.builtin))))
    return list(session.scalars(query))


def add_version(session: Session, found: Filter, author: User, source: str, info: FilterInfo,
                dry_run: dict[str, Any] | None) -> FilterVersion:
    """A new immutable version; the filter takes its name and description from it."""
    found.latest_version += 1
    version = FilterVersion(filter_id=found.id, number=found.latest_version, source=source,
                            sha256=hashlib.sha256(source.encode()).hexdigest(), name=info.name,
                            description=info.description,
                            reads=None if info.reads is None else sorted(info.reads),
                            created_by=author.id, dry_run=dry_run)
    found.name, found.description, found.updated_at = info.name, info.description, utcnow()
    session.add(version)
    session.flush()
    return version


def create_filter(session: Session, owner: User, source: str, info: FilterInfo, dry_run: dict[str, Any] | None,
                  filter_id: str | None = None) -> tuple[Filter, FilterVersion]:
    """A new filter with its first version; its id is random unless given (predefined: the file stem)."""
    found = Filter(id=filter_id or secrets.token_hex(8), owner_id=owner.id, name=info.name,
                   description=info.description, latest_version=0)
    session.add(found)
    session.add(FilterStats(filter_id=found.id))
    session.flush()
    return found, add_version(session, found, owner, source, info, dry_run)


def versions_of(session: Session, found: Filter) -> list[FilterVersion]:
    return list(session.scalars(select(FilterVersion).where(FilterVersion.filter_id == found.id)
                                .order_by(FilterVersion.number)))


def version_of(session: Session, found: Filter, number: int | None = None) -> FilterVersion:
    """Version ``number``, or the latest."""
    wanted = found.latest_version if number is None else number
    version = session.scalar(select(FilterVersion).where(FilterVersion.filter_id == found.id,
                                                         FilterVersion.number == wanted))
    if version is None:
        raise NotFound(f"filter {found.id!r} has no version {wanted}")
    return version


def gate_refusal(version: FilterVersion, max_match_rate: float) -> str | None:
    """Why the activation gate refuses this version, or None. Predefined versions have no dry run."""
    result = version.dry_run
    if result is None:
        return None
    if result["status"] != "ok":
        return (f"version {version.number} was {result['status']} in its dry run: {result['reason']}; "
                "fix it and upload a new version")
    if result["match_rate"] > max_match_rate:
        return (f"version {version.number} matched {result['match_rate']:.1%} of the reference sample "
                f"({result['sample_size']} {result['sample']} alerts), above the {max_match_rate:.1%} limit; "
                "make it more selective, or ask an admin to override the gate for this filter")
    return None


def activate(session: Session, found: Filter, number: int | None, max_match_rate: float) -> FilterVersion:
    """Run this version (default: the latest) from the next visit on, if the gate lets it through."""
    version = version_of(session, found, number)
    if found.moderation is not None and found.moderation.disabled:
        raise Conflict(f"an admin disabled this filter: {found.moderation.reason}")
    refusal = None if found.gate_override else gate_refusal(version, max_match_rate)
    if refusal:
        raise Conflict(refusal, version=version.number, match_rate=version.dry_run and version.dry_run["match_rate"],
                       limit=max_match_rate)
    found.active_version, found.activated_at, found.updated_at = version.number, utcnow(), utcnow()
    found.disabled_reason = found.disabled_dia_source_id = found.disabled_at = None
    session.flush()
    return version


def deactivate(session: Session, found: Filter) -> None:
    found.active_version, found.updated_at = None, utcnow()
    session.flush()


def delete(session: Session, found: Filter) -> None:
    """Soft delete: the filter stops and disappears; its versions, stats and topic name stay reserved."""
    found.active_version, found.deleted_at, found.updated_at = None, utcnow(), utcnow()
    session.flush()


def set_gate_override(session: Session, found: Filter, override: bool) -> None:
    found.gate_override, found.updated_at = override, utcnow()
    session.flush()


def stats_of(session: Session, found: Filter) -> dict[str, Any]:
    """Running totals, why it is disabled if it is, and the latest visits the per-visit cap cut."""
    stats = session.get(FilterStats, found.id)  # made with the filter
    assert stats is not None
    capped = session.scalars(select(FilterVisit).where(FilterVisit.filter_id == found.id, FilterVisit.withheld > 0)
                             .order_by(FilterVisit.updated_at.desc()).limit(RECENT_VISITS))
    return {
        "alerts_seen": stats.alerts_seen, "matched": stats.matched, "delivered": stats.delivered,
        "withheld": stats.withheld, "errors": stats.errors, "timeouts": stats.timeouts, "kills": stats.kills,
        "cpu_seconds": stats.cpu_seconds,
        "cpu_per_alert_us": (stats.cpu_seconds / stats.alerts_seen * 1e6) if stats.alerts_seen else None,
        "last_match_at": stats.last_match_at, "updated_at": stats.updated_at,
        "disabled_reason": found.disabled_reason, "disabled_dia_source_id": found.disabled_dia_source_id,
        "disabled_at": found.disabled_at,
        "capped_visits": [{"visit": v.visit, "matched": v.matched, "delivered": v.delivered, "withheld": v.withheld}
                          for v in capped],
    }


@dataclass(frozen=True)
class ActiveVersion:
    """What a worker needs to run one active filter and cap its owner's deliveries."""

    filter_id: str
    version: int
    activated_at: datetime | None
    owner_id: int
    owner_name: str
    cap: int  # matches per visit for the owner; 0: no cap
    source: str


def active_versions(session: Session, default_cap: int) -> list[ActiveVersion]:
    rows = session.execute(
        select(Filter.id, Filter.active_version, Filter.activated_at, User.id, User.name,
               User.max_matches_per_visit, FilterVersion.source)
        .join(User, User.id == Filter.owner_id)
        .join(FilterVersion, (FilterVersion.filter_id == Filter.id) & (FilterVersion.number == Filter.active_version))
        .where(Filter.deleted_at.is_(None), Filter.active_version.is_not(None),
               Filter.id.not_in(select(FilterModeration.filter_id).where(FilterModeration.disabled)))
        .order_by(Filter.id))
    return [ActiveVersion(fid, number, activated, uid, name, default_cap if cap is None else cap, source)
            for fid, number, activated, uid, name, cap, source in rows]


def sync_predefined(db: Database, directory: Path) -> None:
    """Make the files in ``directory`` the built-in user's filters: a new file becomes an active filter,
    a changed file a new version (active if the filter is), a removed file an inactive filter.
    Idempotent; safe to race. A missing directory (a process started elsewhere) changes nothing."""
    if not directory.is_dir():
        log.warning("AFS_FILTERS_DIR %s is not a directory: predefined filters left as they are", directory)
        return
    for attempt in range(3):
        try:
            with db.transaction() as session:
                _sync(session, directory)
            return
        except IntegrityError:  # another process synced at the same moment: look again
            if attempt == 2:
                raise


def _sync(session: Session, directory: Path) -> None:
    owner = session.scalar(select(User).where(User.name == PREDEFINED_OWNER))
    if owner is None:
        owner = create_user(session, PREDEFINED_OWNER, builtin=True, max_matches_per_visit=0)
    elif not owner.builtin:
        log.error("user %r exists and is not built in: predefined filters not loaded", PREDEFINED_OWNER)
        return
    specs = load_filter_dir(directory, owner.name)
    present = {spec.id for spec in specs}
    for gone in session.scalars(select(Filter).where(Filter.owner_id == owner.id, Filter.id.not_in(present),
                                                     Filter.active_version.is_not(None))):
        log.info("predefined filter %s: no file in %s any more; deactivated", gone.id, directory)
        gone.active_version = None
    for spec in specs:
        try:
            info = check_filter(spec.source, spec.id)
        except FilterRejected as error:
            log.error("predefined filter %s refused: %s", spec.id, error)
            continue
        found = session.get(Filter, spec.id)
        if found is None:
            found, version = create_filter(session, owner, spec.source, info, None, filter_id=spec.id)
        elif found.owner_id != owner.id:
            log.error("predefined filter %s: the id belongs to a user's filter; not loaded", spec.id)
            continue
        elif version_of(session, found).source != spec.source:
            version = add_version(session, found, owner, spec.source, info, None)
            if found.active_version is None:
                continue
        else:
            continue
        if found.deleted_at is None:
            found.active_version, found.activated_at = version.number, utcnow()
    session.flush()
