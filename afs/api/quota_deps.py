"""Quotas for endpoints: charge the caller, refuse with 429, tell them what is left.

    from afs.api.quota_deps import charge, with_quota_headers

    decision = charge(request, actor, "ppdb_queries")           # raises HTTPException(429) when over
    return with_quota_headers(JSONResponse(body), decision)      # success carries the headers too

A 429 carries ``Retry-After`` (seconds, RFC 9110) and, like every charged response,
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds until the quota is whole
again) and ``RateLimit-Policy`` (``limit;w=window;name="kind"``): the field names and delta-seconds
semantics of draft-ietf-httpapi-ratelimit-headers-07, about the quota that binds. ``Throttled`` is the
dependency that applies the per-second token bucket to the data endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, Response, status

from afs.api.deps import ActorDep
from afs.control.users import Actor
from afs.metrics import QUOTA_DENIALS
from afs.quotas.engine import Charge, Decision, QuotaEngine, tightest

R = TypeVar("R", bound=Response)
TOO_MANY = {429: {"description": "Over a quota: Retry-After and RateLimit-* headers say which and until when"}}


def quotas_of(request: Request) -> QuotaEngine:
    return request.app.state.quotas


def refuse(decision: Decision) -> HTTPException:
    QUOTA_DENIALS.labels(decision.kind).inc()
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                         f"over your {decision.kind} quota ({decision.limit:g}); "
                         f"retry in {decision.headers().get('Retry-After', '?')} s",
                         headers=decision.headers())


def charge_all(request: Request, actor: Actor, charges: Sequence[Charge], filter_id: str | None = None) -> Decision:
    """Charge every one of ``charges`` to the caller, or none and raise 429."""
    decision = quotas_of(request).charge(actor.user.id, charges, filter_id)
    if not decision.allowed:
        raise refuse(decision)
    return decision


def charge(request: Request, actor: Actor, kind: str, amount: int = 1, key: int | None = None) -> Decision:
    """Charge ``amount`` of ``kind`` (``key``: the visit, for ``visit_alerts``) or raise 429."""
    return charge_all(request, actor, [Charge(kind, amount, key)])


def throttle(request: Request, actor: ActorDep) -> Decision:
    """The per-second limit (token bucket with a burst), after authentication."""
    decision = quotas_of(request).throttle(actor.user.id)
    if not decision.allowed:
        raise refuse(decision)
    return decision


def with_quota_headers(response: R, *decisions: Decision) -> R:
    response.headers.update(tightest(*decisions).headers())
    return response


Throttled = Annotated[Decision, Depends(throttle)]
