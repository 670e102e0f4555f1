"""Usage and quotas (the user for themselves, admins for anyone), usage reports and filter moderation.

``GET /v1/me/usage`` and ``GET /v1/users/{name}/usage`` show each quota's limit, use and reset time;
``GET/PUT /v1/users/{name}/quotas`` read and (admins) replace a user's limits; ``GET /v1/admin/usage``
reports what was granted per UTC day, user, filter (bulk jobs) and kind; ``POST
/v1/filters/{id}/moderation`` lets an admin stop a filter (workers drop it at their next reload, its
owner cannot activate it) or release it, with a reason its owner sees in ``GET /v1/filters/{id}``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from afs.api.deps import ActorDep, AdminDep, DatabaseDep, SettingsDep
from afs.api.filters import filter_out
from afs.api.quota_deps import quotas_of
from afs.api.schemas import AVRO_LONG_MAX, FilterOut, ModerationIn, QuotaLimits, QuotaLimitsOut, UsageOut, UsageRow
from afs.control import filters, users
from afs.control.models import FilterModeration, UsageDay, User, utcnow
from afs.quotas.engine import Decision
from afs.quotas.limits import PERIODS, REQUESTS, SETTABLE, Limits

router = APIRouter(prefix="/v1", tags=["quotas and administration"])


def limits_out(limits: Limits) -> dict[str, Any]:
    return {kind: getattr(limits, kind) for kind in SETTABLE} | {"overridden": sorted(limits.overridden)}


def _use(decision: Decision, period: str, key: int | None, now: datetime) -> dict[str, Any]:
    return {"kind": decision.kind, "period": period, "key": key, "limit": decision.limit,
            "used": decision.limit - decision.remaining, "remaining": decision.remaining,
            "resets_at": now + timedelta(seconds=decision.reset_s)}


def usage_of(request: Request, user: User, visit: int | None) -> dict[str, Any]:
    engine = quotas_of(request)
    now = datetime.fromtimestamp(engine.clock(), UTC)
    quotas = [_use(engine.remaining(user.id, kind), period, None, now)
              for kind, period in PERIODS.items() if period == "day"]
    if visit is not None:
        quotas.append(_use(engine.remaining(user.id, "visit_alerts", visit), "visit", visit, now))
    quotas.append(_use(engine.remaining(user.id, REQUESTS), "second", None, now))
    return {"user": user.name, "limits": limits_out(engine.limits(user.id)), "quotas": quotas}


VisitQuery = Annotated[int | None, Query(ge=0, le=AVRO_LONG_MAX, description="Also show the per-visit quota of this visit")]


@router.get("/me/usage", response_model=UsageOut)
def my_usage(request: Request, actor: ActorDep, visit: VisitQuery = None) -> dict[str, Any]:
    """Your quotas: limit, use and reset time of each (daily ones reset at 00:00 UTC)."""
    return usage_of(request, actor.user, visit)


@router.get("/users/{name}/usage", response_model=UsageOut)
def user_usage(name: str, request: Request, actor: ActorDep, db: DatabaseDep,
               visit: VisitQuery = None) -> dict[str, Any]:
    with db.sessions() as session:
        user = users.user_named(session, actor, name)
    return usage_of(request, user, visit)


@router.get("/users/{name}/quotas", response_model=QuotaLimitsOut)
def get_quotas(name: str, request: Request, actor: ActorDep, db: DatabaseDep) -> dict[str, Any]:
    """The user's limits: an admin's overrides over the service defaults."""
    with db.sessions() as session:
        user = users.user_named(session, actor, name)
    return limits_out(quotas_of(request).limits(user.id))


@router.put("/users/{name}/quotas", response_model=QuotaLimitsOut)
def put_quotas(name: str, body: QuotaLimits, request: Request, actor: AdminDep, db: DatabaseDep) -> dict[str, Any]:
    """Admins: replace the user's limits (brokers are users with large ones). Missing or null: the default."""
    with db.sessions() as session:
        user = users.user_named(session, actor, name)
    return limits_out(quotas_of(request).set_limits(user.id, body.model_dump()))


def usage_rows(session: Session, user: str | None, filter_id: str | None, day: date | None,
               limit: int) -> list[dict[str, Any]]:
    query = (select(UsageDay, User.name).join(User, User.id == UsageDay.user_id)
             .order_by(UsageDay.day.desc(), User.name, UsageDay.filter_id, UsageDay.kind).limit(limit))
    if user is not None:
        query = query.where(User.name == user)
    if filter_id is not None:
        query = query.where(UsageDay.filter_id == filter_id)
    if day is not None:
        query = query.where(UsageDay.day == day.isoformat())
    return [{"day": row.day, "user": name, "filter_id": row.filter_id or None, "kind": row.kind,
             "amount": row.amount} for row, name in session.execute(query)]


@router.get("/admin/usage", response_model=list[UsageRow])
def usage_report(request: Request, _: AdminDep, db: DatabaseDep, user: str | None = None,
                 filter: Annotated[str | None, Query(description="A filter id (bulk jobs)")] = None,
                 day: Annotated[date | None, Query(description="A UTC day, YYYY-MM-DD")] = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    """Admins: what was granted per UTC day, user, filter and quota kind, newest day first."""
    quotas_of(request).ledger.flush()  # include this process's latest
    with db.sessions() as session:
        return usage_rows(session, user, filter, day, limit)


@router.post("/filters/{filter_id}/moderation", response_model=FilterOut)
def moderate(filter_id: str, body: ModerationIn, actor: AdminDep, db: DatabaseDep,
             settings: SettingsDep) -> dict[str, Any]:
    """Admins: disable a filter (workers stop running it at their next reload, within
    AFS_FILTER_RELOAD_S) or enable it again, with a reason its owner sees."""
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id)
        decision = found.moderation or FilterModeration(filter_id=found.id)
        decision.disabled, decision.reason = body.disabled, body.reason
        decision.by, decision.at = actor.user.name, utcnow()
        found.moderation, found.updated_at = decision, utcnow()
        session.flush()
        return filter_out(session, found, settings)
